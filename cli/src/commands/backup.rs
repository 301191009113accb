//! `maillon node backup`, `maillon node restore` and `maillon node
//! backup-key`: a node's whole state as one age-encrypted archive.
//!
//! The archive is made by the running node (streamed over the client API,
//! admin profile) or, when no node serves the folder, from the folder itself;
//! either way it is encrypted here, to a passphrase (scrypt) or to age
//! recipients (X25519), before it reaches the disk.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use age::secrecy::{ExposeSecret as _, SecretString};
use maillon_node::config::Profile;
use maillon_proto::v1 as pb;

use super::say;
use crate::client::Conn;
use crate::error::CliError;

/// How the archive is encrypted, or decrypted.
pub enum Key {
    /// A passphrase, read from a file (its first line).
    Passphrase(SecretString),
    /// age recipients, post-quantum (`age1pq1…`) or X25519 (`age1…`), for encrypting.
    Recipients(Vec<Box<dyn age::Recipient + Send>>),
    /// age identities (`AGE-SECRET-KEY-PQ-1…` or `AGE-SECRET-KEY-1…`), for decrypting.
    Identities(Vec<Box<dyn age::Identity + Send>>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Key::Passphrase(_) => "Key::Passphrase",
            Key::Recipients(_) => "Key::Recipients",
            Key::Identities(_) => "Key::Identities",
        })
    }
}

/// A recipient: post-quantum first; a classic X25519 one an operator
/// already uses is still taken.
#[allow(deprecated)]
fn recipient(text: &str) -> Option<Box<dyn age::Recipient + Send>> {
    if let Ok(r) = age::pq::Recipient::from_str(text) {
        return Some(Box::new(r));
    }
    age::x25519::Recipient::from_str(text)
        .ok()
        .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
}

/// An identity: post-quantum, or a classic X25519 one.
#[allow(deprecated)]
fn identity(text: &str) -> Option<Box<dyn age::Identity + Send>> {
    if let Ok(i) = age::pq::Identity::from_str(text) {
        return Some(Box::new(i));
    }
    age::x25519::Identity::from_str(text)
        .ok()
        .map(|i| Box::new(i) as Box<dyn age::Identity + Send>)
}

fn bad(arg: &'static str, reason: impl Into<String>) -> CliError {
    CliError::BadKey {
        arg,
        reason: reason.into(),
    }
}

/// The passphrase in `path` (its first line), refused when empty.
pub fn passphrase(path: &Path) -> Result<Key, CliError> {
    let text = crate::error::read_file(path)?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.chars().count() < 12 {
        return Err(bad(
            "passphrase-file",
            "a backup passphrase has at least 12 characters",
        ));
    }
    Ok(Key::Passphrase(SecretString::from(line.to_owned())))
}

/// age recipients as given on the command line.
pub fn recipients(given: &[String]) -> Result<Key, CliError> {
    given
        .iter()
        .map(|r| {
            recipient(r.trim())
                .ok_or_else(|| bad("recipient", format!("{r:?} is not an age recipient")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Key::Recipients)
}

/// The age identities of a key file (lines starting with `#` skipped).
pub fn identities(path: &Path) -> Result<Key, CliError> {
    let text = maillon_node::crypto::read_secret_file(path)?;
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            identity(l).ok_or_else(|| {
                bad(
                    "identity",
                    format!(
                        "{} holds a line that is not an age identity",
                        path.display()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(bad(
            "identity",
            format!("{} holds no age identity", path.display()),
        ));
    }
    Ok(Key::Identities(keys))
}

/// `maillon node backup-key --out FILE`: a new age identity (0600) and its
/// recipient, printed: encrypt backups to the recipient, keep the identity
/// off the node's host.
pub fn new_key(out: &Path, json: bool) -> Result<(), CliError> {
    // Post-quantum (ML-KEM-768 with X25519), age's recommended kind.
    let identity = age::pq::Identity::generate();
    let recipient = identity.to_public();
    let text = format!(
        "# a Maillon backup key: it decrypts every backup made to {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    maillon_node::crypto::write_secret_file(out, text.as_bytes())?;
    if json {
        super::print_value(&serde_json::json!({
            "identity_file": out.display().to_string(),
            "recipient": recipient.to_string(),
        }));
        return Ok(());
    }
    say(&format!(
        "backup key written to {} (0600): keep it off the node's host",
        out.display()
    ));
    println!("recipient: {recipient}");
    Ok(())
}

/// An encrypting writer to a new 0600 file.
fn encrypted_file(
    out: &Path,
    key: &Key,
) -> Result<age::stream::StreamWriter<std::io::BufWriter<std::fs::File>>, CliError> {
    let encryptor = match key {
        Key::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        Key::Recipients(rs) => {
            age::Encryptor::with_recipients(rs.iter().map(|r| r.as_ref() as &dyn age::Recipient))
                .map_err(|e| bad("recipient", e.to_string()))?
        }
        Key::Identities(_) => {
            return Err(bad(
                "identity",
                "an identity decrypts; encrypt with --recipient",
            ));
        }
    };
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => CliError::Exists {
                    path: out.to_owned(),
                },
                _ => CliError::io(format!("creating {}", out.display()))(e),
            })?
    };
    encryptor
        .wrap_output(std::io::BufWriter::new(file))
        .map_err(CliError::io(format!("writing {}", out.display())))
}

/// `maillon node backup`: from the running node if one serves `dir`, else
/// from the folder; the file is removed if anything fails.
pub async fn backup(
    dir: &Path,
    out: &Path,
    key: Key,
    profile: Option<&Path>,
    json: bool,
) -> Result<(), CliError> {
    let mut writer = encrypted_file(out, &key)?;
    let made = match maillon_node::daemon::folder_holder(dir) {
        Some(holder) => {
            let profile_path: PathBuf = profile
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.join("admin.profile.toml"));
            let conn = Conn::new(&Profile::read(&profile_path)?)?;
            if !json {
                say(&format!(
                    "maillond ({holder}) serves {}: it makes the archive",
                    dir.display()
                ));
            }
            online(&conn, &mut writer).await
        }
        None => {
            // The folder itself, locked meanwhile; the archive's bytes go
            // through a pipe into the encrypting writer.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
            let made = maillon_node::daemon::backup_offline(dir, PipeWriter(tx));
            let pump = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                for chunk in rx {
                    writer.write_all(&chunk)?;
                }
                Ok(writer)
            });
            let made = made.await.map_err(|source| CliError::Folder {
                dir: dir.to_owned(),
                source,
            });
            let pumped = pump.await?;
            writer = pumped.map_err(CliError::io(format!("writing {}", out.display())))?;
            made.map(|m| serde_json::to_string(&m).unwrap_or_default())
        }
    };
    let finished = made.and_then(|manifest| {
        writer
            .finish()
            .and_then(|mut w| w.flush().map(|()| w))
            .and_then(|w| w.get_ref().sync_all())
            .map_err(CliError::io(format!("writing {}", out.display())))?;
        Ok(manifest)
    });
    match finished {
        Ok(manifest) => {
            let m: maillon_node::service::BackupManifest = serde_json::from_str(&manifest)
                .map_err(|e| CliError::Backup(format!("the archive's manifest: {e}")))?;
            if json {
                let mut value = serde_json::to_value(&m).unwrap_or_default();
                value["file"] = serde_json::Value::String(out.display().to_string());
                super::print_value(&value);
                return Ok(());
            }
            say(&format!(
                "backup of {} written to {} (age-encrypted, 0600): {} store records, {} log entries or more, {} log bytes",
                m.member,
                out.display(),
                m.store_records,
                m.log_entries,
                m.log_bytes
            ));
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(out);
            Err(e)
        }
    }
}

/// The archive from the running node, into `writer`; its manifest.
async fn online(conn: &Conn, writer: &mut impl std::io::Write) -> Result<String, CliError> {
    let mut stream = conn
        .api()
        .node_backup(conn.req(pb::NodeBackupRequest {}))
        .await?
        .into_inner();
    let mut manifest = None;
    while let Some(chunk) = stream.message().await? {
        if !chunk.manifest.is_empty() {
            manifest = Some(chunk.manifest);
            break;
        }
        writer
            .write_all(&chunk.data)
            .map_err(CliError::io("writing the backup"))?;
    }
    manifest.ok_or_else(|| {
        CliError::Backup(
            "the node's archive ended without its manifest: no backup was written".into(),
        )
    })
}

/// Sends what is written through a channel, to the thread that encrypts it.
struct PipeWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl std::io::Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| std::io::Error::other("the encrypting writer stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `maillon node restore`: decrypts the archive and brings the node back in
/// `dir`; the node's first start then asks its peers before signing.
pub async fn restore(from: &Path, dir: &Path, key: Key, json: bool) -> Result<(), CliError> {
    let file =
        std::fs::File::open(from).map_err(CliError::io(format!("opening {}", from.display())))?;
    let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(file)).map_err(|e| {
        bad(
            "from",
            format!("{} is not an age-encrypted backup: {e}", from.display()),
        )
    })?;
    let reader = match &key {
        Key::Passphrase(p) => {
            let identity = age::scrypt::Identity::new(p.clone());
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        }
        Key::Identities(ids) => {
            decryptor.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        }
        Key::Recipients(_) => {
            return Err(bad(
                "recipient",
                "a recipient encrypts; decrypt with --identity or --passphrase-file",
            ));
        }
    }
    .map_err(|e| CliError::BadKey {
        arg: "from",
        reason: format!("{} cannot be decrypted with this key: {e}", from.display()),
    })?;
    let restored = maillon_node::daemon::restore(dir, reader)
        .await
        .map_err(|source| CliError::Folder {
            dir: dir.to_owned(),
            source,
        })?;
    if json {
        let mut value = serde_json::to_value(&restored.manifest).unwrap_or_default();
        value["dir"] = serde_json::Value::String(dir.display().to_string());
        value["restored_records"] = serde_json::Value::from(restored.store_records);
        super::print_value(&value);
        return Ok(());
    }
    say(&format!(
        "node {} restored in {}: {} store records, {} log bytes, backup of {}",
        restored.config.member,
        dir.display(),
        restored.store_records,
        restored.manifest.log_bytes,
        super::utc(restored.manifest.created_at)
    ));
    // Anyone holding the recipient can make an archive: the genesis tells
    // whose federation this is, to check against the one given out of band.
    if let Ok(genesis) = maillon_node::daemon::load_roster(&restored.config.roster_path()) {
        say(&format!(
            "  federation {}, genesis roster {}: check it is yours",
            genesis.roster().federation,
            genesis.hash_hex()
        ));
    }
    println!(
        "next: start it (`maillond --dir {}`); its first start asks every peer what it witnessed of this node's log and signs nothing if one witnessed more",
        dir.display()
    );
    Ok(())
}
