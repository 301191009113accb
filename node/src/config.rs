//! A node's directory: its configuration, keys, public card, and first admin profile.
//!
//! ```text
//! DIR/node.toml          configuration (this module parses and validates it)
//! DIR/signing.key        Ed25519 signing key, 0600
//! DIR/tls.key, tls.crt   the peer API's TLS key (Ed25519, 0600) and self-signed certificate
//! DIR/client-tls.key, client-tls.crt
//!                        the client API's TLS key (ECDSA P-256, 0600) and certificate
//! DIR/card.json          the public member card founders put in the roster
//! DIR/admin.profile.toml the first admin's client profile (holds a token), 0600
//! DIR/roster.json        the federation's genesis roster, placed by the operator
//! DIR/store/, DIR/audit/ the sled store (with the later roster versions) and the audit log
//! DIR/maillond.lock      held by the process serving the folder; holds its id
//! DIR/sponsor.json       a newcomer's sponsor's card: whom to fetch the chain from first
//! DIR/*.next             keys staged by `maillon node rotate-keys`, and card.next.json:
//!                        put in force at the start that follows their adoption
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, NodeKey, SpkiHash, TlsIdentity, write_secret_file};
use crate::limits::Limits;
use crate::roster::MemberCard;
use crate::types::{MemberId, MemberKind, ParseError};

/// Errors reading or writing a node directory.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not valid.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file or folder concerned.
        path: PathBuf,
        /// Why, in one line (what the refused party was told).
        reason: String,
    },
    /// Key handling failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A value did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// `node.toml` as written on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    member: String,
    name: String,
    kind: String,
    peer_listen: String,
    client_listen: String,
    peer_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    console_listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    console_tls_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    console_tls_key: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oidc: Option<RawOidc>,
}

/// The `[oidc]` table as written on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret_file: String,
    redirect_url: String,
    #[serde(default)]
    claim: Option<String>,
    #[serde(default)]
    scopes: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
}

/// Where the identity provider sends a browser back to, on the console.
pub const OIDC_RETURN_PATH: &str = "/connexion/oidc/retour";

/// How the console logs staff in through the institution's OpenID Connect
/// identity provider (ProConnect, a Keycloak, an ADFS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The provider's issuer URL (`https://…`), where its discovery document is.
    pub issuer: String,
    /// This console's client id at the provider.
    pub client_id: String,
    /// The file holding the client secret (0600), relative to the node directory.
    pub client_secret_file: PathBuf,
    /// The console's address the provider sends browsers back to
    /// (`https://HOST[:PORT]/connexion/oidc/retour`), as registered there.
    pub redirect_url: String,
    /// The claim whose value names the node-local user (`sub` by default;
    /// `email` or `uid` with ProConnect, `preferred_username` with Keycloak).
    pub claim: String,
    /// The scopes asked for, `openid` among them.
    pub scopes: Vec<String>,
    /// A PEM file of the authorities that vouch for the provider's
    /// certificate, relative to the node directory; absent: the system's.
    pub ca_file: Option<PathBuf>,
}

impl RawOidc {
    /// Validates the table; `origin` names a field and where it came from.
    fn validate(self, dir: &Path, origin: impl Fn(&str) -> String) -> Result<OidcConfig, String> {
        let https = |field: &str, text: &str| -> Result<url::Url, String> {
            let parsed =
                url::Url::parse(text).map_err(|e| format!("{}: not a URL ({e})", origin(field)))?;
            if parsed.scheme() != "https" || parsed.host_str().is_none() {
                return Err(format!(
                    "{}: expected an https:// address, found {text:?}",
                    origin(field)
                ));
            }
            Ok(parsed)
        };
        https("oidc.issuer", &self.issuer)?;
        let back = https("oidc.redirect_url", &self.redirect_url)?;
        if back.path() != OIDC_RETURN_PATH || back.query().is_some() {
            return Err(format!(
                "{}: the console's return address ends in {OIDC_RETURN_PATH}, found {:?}",
                origin("oidc.redirect_url"),
                self.redirect_url
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(format!("{}: empty", origin("oidc.client_id")));
        }
        let claim = self.claim.unwrap_or_else(|| "sub".to_owned());
        if claim.is_empty()
            || !claim
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!(
                "{}: a claim name such as sub, email or preferred_username, found {claim:?}",
                origin("oidc.claim")
            ));
        }
        let scopes: Vec<String> = self
            .scopes
            .as_deref()
            .unwrap_or("openid")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !scopes.iter().any(|s| s == "openid") {
            return Err(format!(
                "{}: the scopes must include openid",
                origin("oidc.scopes")
            ));
        }
        Ok(OidcConfig {
            issuer: self.issuer,
            client_id: self.client_id,
            client_secret_file: dir.join(self.client_secret_file),
            redirect_url: self.redirect_url,
            claim,
            scopes,
            ca_file: self.ca_file.map(|f| dir.join(f)),
        })
    }
}

fn is_default(limits: &Limits) -> bool {
    *limits == Limits::default()
}

/// The type of a setting's value, for reading it from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Number,
}

/// Every setting of `node.toml`, by its path (`table.key`), with its type.
/// Each can be given by the environment instead: `MAILLON_` and the path in
/// capitals, dots as underscores (`MAILLON_LIMITS_USER_READS_PER_SECOND`).
const SETTINGS: &[(&str, Kind)] = &[
    ("member", Kind::Text),
    ("name", Kind::Text),
    ("kind", Kind::Text),
    ("peer_listen", Kind::Text),
    ("client_listen", Kind::Text),
    ("peer_endpoint", Kind::Text),
    ("metrics_listen", Kind::Text),
    ("console_listen", Kind::Text),
    ("console_tls_cert", Kind::Text),
    ("console_tls_key", Kind::Text),
    ("limits.user_reads_per_second", Kind::Number),
    ("limits.user_reads_burst", Kind::Number),
    ("limits.peer_reads_per_second", Kind::Number),
    ("limits.peer_reads_burst", Kind::Number),
    ("limits.peer_mls_per_second", Kind::Number),
    ("limits.peer_mls_burst", Kind::Number),
    ("limits.groups_per_peer", Kind::Number),
    ("oidc.issuer", Kind::Text),
    ("oidc.client_id", Kind::Text),
    ("oidc.client_secret_file", Kind::Text),
    ("oidc.redirect_url", Kind::Text),
    ("oidc.claim", Kind::Text),
    ("oidc.scopes", Kind::Text),
    ("oidc.ca_file", Kind::Text),
];

/// The environment variable that overrides the setting at `path`.
pub fn env_name(path: &str) -> String {
    format!("MAILLON_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// The paths of every setting `node.toml` takes (what a deployment may name).
pub fn setting_paths() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|(path, _)| *path)
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node directory.
    pub dir: PathBuf,
    /// This node's member id.
    pub member: MemberId,
    /// Its display name.
    pub name: String,
    /// Its kind of institution.
    pub kind: MemberKind,
    /// Where the peer API listens.
    pub peer_listen: SocketAddr,
    /// Where the client API listens.
    pub client_listen: SocketAddr,
    /// The peer endpoint other members dial (`host:port`).
    pub peer_endpoint: String,
    /// Where the Prometheus metrics are served over plain HTTP, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the web console is served over HTTPS, if anywhere.
    pub console_listen: Option<SocketAddr>,
    /// The certificate chain and key (PEM files) the operator gives the
    /// console, if any; otherwise it serves the client API's certificate.
    pub console_tls: Option<(PathBuf, PathBuf)>,
    /// Rate limits and caps.
    pub limits: Limits,
    /// The console's login through an identity provider, if configured.
    pub oidc: Option<OidcConfig>,
    /// The environment variables that overrode `node.toml`, by name.
    pub from_env: Vec<String>,
}

/// What `maillon node init` is asked for.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The new node directory (absent or empty).
    pub dir: PathBuf,
    /// Member id.
    pub member: MemberId,
    /// Display name.
    pub name: String,
    /// Kind of institution.
    pub kind: MemberKind,
    /// Peer API listen address.
    pub peer_addr: SocketAddr,
    /// The endpoint other members dial (`host:port`); defaults to `peer_addr`.
    pub peer_endpoint: Option<String>,
    /// Client API listen address.
    pub client_addr: SocketAddr,
}

/// What a CLI user keeps to talk to a node: endpoint, certificate pin, token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The client API address, `host:port`.
    pub endpoint: String,
    /// SHA-256 of the node's TLS SubjectPublicKeyInfo.
    pub server_spki_sha256: SpkiHash,
    /// The member the node belongs to.
    pub member: MemberId,
    /// The user name (informational).
    pub user: String,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("endpoint", &self.endpoint)
            .field("member", &self.member)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// Writes the profile to a new file created 0600 (it holds a token).
    pub fn write_new(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string(self).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        write_secret_file(path, text.as_bytes())?;
        Ok(())
    }

    /// Replaces the profile file (created 0600 beside it, then renamed over it).
    pub fn replace(&self, path: &Path) -> Result<(), ConfigError> {
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        self.write_new(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a profile, refusing one that others can read.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::crypto::read_secret_file(path)?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            reason: e.message().to_owned(),
        })
    }
}

impl Config {
    /// Path of the node's configuration file.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("node.toml")
    }
    /// Path of the signing key.
    pub fn signing_key_path(&self) -> PathBuf {
        self.dir.join("signing.key")
    }
    /// Path of the TLS key.
    pub fn tls_key_path(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
    /// Path of the TLS certificate.
    pub fn tls_cert_path(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }
    /// Path of the client API's TLS key.
    pub fn client_tls_key_path(&self) -> PathBuf {
        self.dir.join("client-tls.key")
    }
    /// Path of the client API's TLS certificate.
    pub fn client_tls_cert_path(&self) -> PathBuf {
        self.dir.join("client-tls.crt")
    }
    /// The client API's TLS identity; a node directory made before it
    /// existed gets one here (and its users' profiles a new pin).
    pub fn client_tls_identity(&self) -> Result<TlsIdentity, CryptoError> {
        let (key, cert) = (self.client_tls_key_path(), self.client_tls_cert_path());
        if key.exists() != cert.exists() {
            // Stopped between writing the two: neither was ever used.
            let half = if key.exists() { &key } else { &cert };
            tracing::warn!(file = %half.display(), "the client API's TLS identity is half written: making it again");
            std::fs::remove_file(half).map_err(|source| CryptoError::Io {
                path: half.clone(),
                source,
            })?;
        }
        if !key.exists() && !cert.exists() {
            let identity = TlsIdentity::generate_for_clients(&self.member)?;
            identity.write_new(&key, &cert)?;
            tracing::info!("created the client API's ECDSA P-256 TLS identity");
            return Ok(identity);
        }
        TlsIdentity::read(&key, &cert)
    }
    /// Path of the signed roster.
    pub fn roster_path(&self) -> PathBuf {
        self.dir.join("roster.json")
    }
    /// Path of the public member card.
    pub fn card_path(&self) -> PathBuf {
        self.dir.join("card.json")
    }
    /// Directory of the sled store.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }
    /// Directory of the per-dossier keys that seal sections and identity
    /// records at rest (erasing a dossier destroys its key).
    pub fn dossier_keys_dir(&self) -> PathBuf {
        self.dir.join("dossier-keys")
    }
    /// Directory of the audit log.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.join("audit")
    }
    /// Path of the first admin's profile.
    pub fn admin_profile_path(&self) -> PathBuf {
        self.dir.join("admin.profile.toml")
    }
    /// Path of a staged file: `name` with `.next` appended.
    fn staged(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.next"))
    }
    /// Path of the staged signing key (a rotation in progress).
    pub fn staged_signing_key_path(&self) -> PathBuf {
        self.staged("signing.key")
    }
    /// Path of the sponsor's card a newcomer was given (`maillon node join --sponsor`).
    pub fn sponsor_card_path(&self) -> PathBuf {
        self.dir.join("sponsor.json")
    }
    /// Path of the staged card, listing the staged keys.
    pub fn staged_card_path(&self) -> PathBuf {
        self.dir.join("card.next.json")
    }

    /// `maillon node rotate-keys`: creates new keys beside the ones in force
    /// (the signing key, the TLS key, or both), 0600, and the card that lists
    /// them, for the `update-member` proposal. Refuses while a rotation is staged.
    pub fn stage_keys(&self, signing: bool, tls: bool) -> Result<MemberCard, ConfigError> {
        if !signing && !tls {
            return Err(ConfigError::Invalid {
                path: self.dir.clone(),
                reason: "nothing to rotate: name the signing key, the TLS key, or both".into(),
            });
        }
        for staged in [
            self.staged_signing_key_path(),
            self.staged("tls.key"),
            self.staged("tls.crt"),
            self.staged_card_path(),
        ] {
            if staged.exists() {
                return Err(ConfigError::Invalid {
                    path: staged,
                    reason: "a rotation is already staged; wait for its adoption, or delete the .next files to abandon it".into(),
                });
            }
        }
        let text = std::fs::read_to_string(self.card_path()).map_err(|source| ConfigError::Io {
            path: self.card_path(),
            source,
        })?;
        let mut card: MemberCard =
            serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
                path: self.card_path(),
                reason: e.to_string(),
            })?;
        if signing {
            let key = NodeKey::generate();
            key.write_new(&self.staged_signing_key_path())?;
            card.signing_key = key.public();
        }
        if tls {
            let identity = TlsIdentity::generate(&self.member)?;
            identity.write_new(&self.staged("tls.key"), &self.staged("tls.crt"))?;
            card.tls_spki_sha256 = identity.spki_hash()?;
        }
        let json = serde_json::to_string_pretty(&card).unwrap_or_default();
        std::fs::write(self.staged_card_path(), json + "\n").map_err(|source| ConfigError::Io {
            path: self.staged_card_path(),
            source,
        })?;
        Ok(card)
    }

    /// At start: puts in force the staged keys that `listed` (this member's
    /// entry in the roster in force) names, replacing the old key files;
    /// returns which were put in force (`signing`, `tls`). Each key moves by
    /// one rename, so a crash in between leaves either key whole.
    pub fn promote_staged(&self, listed: &MemberCard) -> Result<Vec<&'static str>, ConfigError> {
        let mut promoted = Vec::new();
        let rename = |from: PathBuf, to: PathBuf| {
            std::fs::rename(&from, &to).map_err(|source| ConfigError::Io { path: from, source })
        };
        let staged_key = self.staged_signing_key_path();
        if staged_key.exists() && NodeKey::read(&staged_key)?.public() == listed.signing_key {
            rename(staged_key, self.signing_key_path())?;
            promoted.push("signing");
        }
        let (staged_tls, staged_crt) = (self.staged("tls.key"), self.staged("tls.crt"));
        if staged_tls.exists()
            && TlsIdentity::read(&staged_tls, &staged_crt)?.spki_hash()? == listed.tls_spki_sha256
        {
            // The certificate first: a crash before the key moves leaves a
            // pair that does not match, which start refuses; the next start
            // moves the key (its staged pair is checked by pin, not by file).
            std::fs::copy(&staged_crt, self.tls_cert_path()).map_err(|source| ConfigError::Io {
                path: staged_crt.clone(),
                source,
            })?;
            rename(staged_tls.clone(), self.tls_key_path())?;
            let _ = std::fs::remove_file(&staged_crt);
            promoted.push("tls");
        }
        if !staged_tls.exists() && staged_crt.exists() {
            // Left by a promotion cut after its key moved.
            let _ = std::fs::remove_file(&staged_crt);
        }
        let staged_card = self.staged_card_path();
        let keys_done =
            !self.staged_signing_key_path().exists() && !self.staged("tls.key").exists();
        if staged_card.exists() && keys_done {
            rename(staged_card, self.card_path())?;
        }
        Ok(promoted)
    }

    /// Loads and validates `DIR/node.toml`, with the overrides the
    /// process's environment gives (`MAILLON_PEER_LISTEN`…).
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(dir, |name| std::env::var(name).ok())
    }

    /// Loads and validates `DIR/node.toml`, each setting overridden by
    /// `env(name)` when it gives a value (see [`env_name`]).
    pub fn load_with_env(
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let path = Self::file(dir);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.clone(),
            reason,
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e: toml::de::Error| invalid(e.message().to_owned()))?;
        let mut from_env = Vec::new();
        for &(setting, kind) in SETTINGS {
            let name = env_name(setting);
            let Some(value) = env(&name) else { continue };
            let value = match kind {
                Kind::Text => toml::Value::String(value),
                Kind::Number => toml::Value::Integer(value.trim().parse().map_err(|_| {
                    invalid(format!("{name}: expected a whole number, found {value:?}"))
                })?),
            };
            let (table_name, key) = match setting.split_once('.') {
                Some((t, k)) => (Some(t), k),
                None => (None, setting),
            };
            let target = match table_name {
                None => &mut table,
                Some(t) => match table
                    .entry(t)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                {
                    toml::Value::Table(inner) => inner,
                    _ => return Err(invalid(format!("{t}: expected a table"))),
                },
            };
            target.insert(key.to_owned(), value);
            from_env.push(name);
        }
        let origin = |field: &str| -> String {
            let name = env_name(field);
            if from_env.contains(&name) {
                format!("{field} (from {name})")
            } else {
                field.to_owned()
            }
        };
        let raw: RawConfig = table.try_into().map_err(|e: toml::de::Error| {
            let mut reason = e.message().to_owned();
            if !from_env.is_empty() {
                reason.push_str(&format!(
                    " (with {} from the environment)",
                    from_env.join(", ")
                ));
            }
            invalid(reason)
        })?;
        let addr = |field: &str, s: &str| -> Result<SocketAddr, ConfigError> {
            s.parse()
                .map_err(|_| invalid(format!("{}: expected ip:port, found {s:?}", origin(field))))
        };
        if let Some(problem) = raw.limits.problem() {
            return Err(invalid(format!("limits: {problem}")));
        }
        crate::types::check_endpoint(&raw.peer_endpoint)
            .map_err(|e| invalid(format!("{}: {e}", origin("peer_endpoint"))))?;
        let console_tls = match (&raw.console_tls_cert, &raw.console_tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) if raw.console_listen.is_some() => {
                Some((dir.join(cert), dir.join(key)))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "{}: a certificate for a console that is not served: set console_listen too",
                    origin("console_tls_cert")
                )));
            }
            _ => {
                return Err(invalid(
                    "console_tls_cert and console_tls_key go together: set both, or neither".into(),
                ));
            }
        };
        if raw.oidc.is_some() && raw.console_listen.is_none() {
            return Err(invalid(
                "oidc: a login for a console that is not served: set console_listen too".into(),
            ));
        }
        let oidc = raw
            .oidc
            .map(|o| o.validate(dir, origin))
            .transpose()
            .map_err(invalid)?;
        Ok(Self {
            dir: dir.to_owned(),
            member: raw
                .member
                .parse()
                .map_err(|e: ParseError| invalid(format!("{}: {e}", origin("member"))))?,
            name: raw.name,
            kind: raw
                .kind
                .parse()
                .map_err(|e: ParseError| invalid(format!("{}: {e}", origin("kind"))))?,
            peer_listen: addr("peer_listen", &raw.peer_listen)?,
            client_listen: addr("client_listen", &raw.client_listen)?,
            peer_endpoint: raw.peer_endpoint,
            metrics_listen: raw
                .metrics_listen
                .as_deref()
                .map(|s| addr("metrics_listen", s))
                .transpose()?,
            console_listen: raw
                .console_listen
                .as_deref()
                .map(|s| addr("console_listen", s))
                .transpose()?,
            console_tls,
            limits: raw.limits,
            oidc,
            from_env,
        })
    }

    /// Sets the `[limits]` table of `DIR/node.toml` (the rest of the file is
    /// kept; comments are not), written whole or not at all.
    pub fn write_limits(dir: &Path, limits: &Limits) -> Result<(), ConfigError> {
        let path = Self::file(dir);
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.clone(),
            reason,
        };
        let io = |source| ConfigError::Io {
            path: path.clone(),
            source,
        };
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e: toml::de::Error| invalid(e.message().to_owned()))?;
        if is_default(limits) {
            table.remove("limits");
        } else {
            let value = toml::Value::try_from(limits).map_err(|e| invalid(e.to_string()))?;
            table.insert("limits".into(), value);
        }
        let text = toml::to_string(&table).map_err(|e| invalid(e.to_string()))?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Creates a node directory: keys (0600), configuration and public card.
    /// Returns the configuration and the card.
    pub fn init(opts: &InitOptions) -> Result<(Self, MemberCard), ConfigError> {
        let dir = &opts.dir;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Io { path, source }
        };
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
            if entries.next().is_some() {
                return Err(ConfigError::Invalid {
                    path: dir.clone(),
                    reason: "directory is not empty; a node is initialised once".into(),
                });
            }
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
        if let Some(e) = &opts.peer_endpoint {
            crate::types::check_endpoint(e)?;
        }
        crate::types::check_display_name(&opts.name)?;
        let raw = RawConfig {
            member: opts.member.to_string(),
            name: opts.name.clone(),
            kind: opts.kind.to_string(),
            peer_listen: opts.peer_addr.to_string(),
            client_listen: opts.client_addr.to_string(),
            peer_endpoint: opts
                .peer_endpoint
                .clone()
                .unwrap_or_else(|| opts.peer_addr.to_string()),
            metrics_listen: None,
            console_listen: None,
            console_tls_cert: None,
            console_tls_key: None,
            limits: Limits::default(),
            oidc: None,
        };
        let cfg_path = Self::file(dir);
        let text = toml::to_string(&raw).map_err(|e| ConfigError::Invalid {
            path: cfg_path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&cfg_path, text).map_err(io(&cfg_path))?;
        let config = Self::load(dir)?;

        let key = NodeKey::generate();
        key.write_new(&config.signing_key_path())?;
        let tls = TlsIdentity::generate(&config.member)?;
        tls.write_new(&config.tls_key_path(), &config.tls_cert_path())?;
        TlsIdentity::generate_for_clients(&config.member)?.write_new(
            &config.client_tls_key_path(),
            &config.client_tls_cert_path(),
        )?;

        let card = MemberCard {
            id: config.member.clone(),
            name: config.name.clone(),
            kind: config.kind,
            endpoint: config.peer_endpoint.clone(),
            signing_key: key.public(),
            tls_spki_sha256: tls.spki_hash()?,
        };
        let card_json = serde_json::to_string_pretty(&card).unwrap_or_default();
        std::fs::write(config.card_path(), card_json + "\n").map_err(io(&config.card_path()))?;
        Ok((config, card))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
member = "ccas-rodez"
name = "CCAS de Rodez"
kind = "ccas"
peer_listen = "127.0.0.1:7401"
client_listen = "127.0.0.1:7402"
peer_endpoint = "maillon.ccas-rodez.example:7401"
"#;

    fn folder(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(Config::file(dir.path()), text).expect("write");
        dir
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn refusal(dir: &Path, pairs: &[(&str, &str)]) -> String {
        match Config::load_with_env(dir, env(pairs)) {
            Err(ConfigError::Invalid { reason, .. }) => reason,
            other => panic!("refused expected, got {other:?}"),
        }
    }

    #[test]
    fn every_setting_can_come_from_the_environment_and_says_so() {
        let dir = folder(TOML);
        let plain = Config::load_with_env(dir.path(), env(&[])).expect("loads");
        assert_eq!(plain.limits, Limits::default());
        assert_eq!(plain.metrics_listen, None);
        assert!(plain.from_env.is_empty());
        let c = Config::load_with_env(
            dir.path(),
            env(&[
                ("MAILLON_PEER_LISTEN", "0.0.0.0:9401"),
                ("MAILLON_METRICS_LISTEN", "127.0.0.1:9403"),
                ("MAILLON_LIMITS_USER_READS_PER_SECOND", "5"),
                ("MAILLON_LIMITS_USER_READS_BURST", " 10 "),
                ("MAILLON_NAME", "CCAS de Rodez (secours)"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.peer_listen.to_string(), "0.0.0.0:9401");
        assert_eq!(
            c.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9403")
        );
        assert_eq!(c.limits.user_reads_per_second, 5);
        assert_eq!(c.limits.user_reads_burst, 10);
        assert_eq!(
            c.limits.peer_reads_per_second,
            Limits::default().peer_reads_per_second
        );
        assert_eq!(c.name, "CCAS de Rodez (secours)");
        assert_eq!(c.from_env.len(), 5);
        // Every setting has its variable, and each is one the file takes.
        for path in setting_paths() {
            assert!(env_name(path).starts_with("MAILLON_"));
        }
        assert_eq!(
            env_name("limits.groups_per_peer"),
            "MAILLON_LIMITS_GROUPS_PER_PEER"
        );
    }

    #[test]
    fn a_bad_value_is_refused_naming_where_it_came_from() {
        let dir = folder(TOML);
        let r = refusal(dir.path(), &[("MAILLON_PEER_LISTEN", "partout")]);
        assert!(r.contains("peer_listen (from MAILLON_PEER_LISTEN)"), "{r}");
        let r = refusal(dir.path(), &[("MAILLON_LIMITS_PEER_MLS_BURST", "beaucoup")]);
        assert!(
            r.contains("MAILLON_LIMITS_PEER_MLS_BURST: expected a whole number"),
            "{r}"
        );
        let r = refusal(dir.path(), &[("MAILLON_MEMBER", "CCAS Rodez!")]);
        assert!(r.contains("member (from MAILLON_MEMBER)"), "{r}");
        let r = refusal(dir.path(), &[("MAILLON_PEER_ENDPOINT", "no-port")]);
        assert!(
            r.contains("peer_endpoint (from MAILLON_PEER_ENDPOINT)"),
            "{r}"
        );
        let r = refusal(
            dir.path(),
            &[
                ("MAILLON_LIMITS_USER_READS_PER_SECOND", "100"),
                ("MAILLON_LIMITS_USER_READS_BURST", "10"),
            ],
        );
        assert!(r.contains("user_reads_burst"), "{r}");
        let r = refusal(dir.path(), &[("MAILLON_LIMITS_GROUPS_PER_PEER", "-1")]);
        assert!(
            r.contains("groups_per_peer") || r.contains("invalid value"),
            "{r}"
        );
    }

    #[test]
    fn the_file_refuses_unknown_settings_and_limits_are_written_back() {
        let dir = folder(&format!("{TOML}metrics_port = 9\n"));
        assert!(refusal(dir.path(), &[]).contains("metrics_port"));
        let dir = folder(&format!("{TOML}[limits]\nreads = 3\n"));
        assert!(refusal(dir.path(), &[]).contains("reads"));
        let dir = folder(TOML);
        Config::write_limits(dir.path(), &Limits::OFF).expect("written");
        let c = Config::load_with_env(dir.path(), env(&[])).expect("loads");
        assert_eq!(c.limits, Limits::OFF);
        assert_eq!(c.peer_endpoint, "maillon.ccas-rodez.example:7401");
        Config::write_limits(dir.path(), &Limits::default()).expect("written");
        let text = std::fs::read_to_string(Config::file(dir.path())).expect("read");
        assert!(!text.contains("limits"), "defaults are not written: {text}");
    }

    const OIDC: &str = r#"
[oidc]
issuer = "https://auth.agentconnect.gouv.fr/api/v2"
client_id = "maillon-ccas-rodez"
client_secret_file = "oidc-client-secret"
redirect_url = "https://console.ccas-rodez.example/connexion/oidc/retour"
"#;

    #[test]
    fn the_identity_provider_is_checked_when_loaded_and_can_come_from_the_environment() {
        let without_console = folder(&format!("{TOML}{OIDC}"));
        assert!(refusal(without_console.path(), &[]).contains("set console_listen too"));
        let dir = folder(&format!(
            "console_listen = \"127.0.0.1:7404\"\n{TOML}{OIDC}"
        ));
        let c = Config::load_with_env(dir.path(), env(&[])).expect("loads");
        let oidc = c.oidc.expect("an identity provider");
        assert_eq!(oidc.claim, "sub", "the default claim");
        assert_eq!(oidc.scopes, ["openid"]);
        assert_eq!(
            oidc.client_secret_file,
            dir.path().join("oidc-client-secret")
        );
        assert_eq!(oidc.ca_file, None);
        let c = Config::load_with_env(
            dir.path(),
            env(&[
                ("MAILLON_OIDC_CLAIM", "uid"),
                ("MAILLON_OIDC_SCOPES", "openid uid email"),
                ("MAILLON_OIDC_CA_FILE", "ca.pem"),
            ]),
        )
        .expect("loads");
        let oidc = c.oidc.expect("an identity provider");
        assert_eq!(oidc.claim, "uid");
        assert_eq!(oidc.scopes, ["openid", "uid", "email"]);
        assert_eq!(oidc.ca_file, Some(dir.path().join("ca.pem")));

        // Every way to get it wrong is refused, naming the setting.
        let plain = folder(TOML);
        assert!(
            refusal(
                plain.path(),
                &[("MAILLON_OIDC_ISSUER", "https://idp.example")]
            )
            .contains("missing field")
        );
        for (variable, value, expected) in [
            (
                "MAILLON_OIDC_ISSUER",
                "http://idp.example",
                "oidc.issuer (from MAILLON_OIDC_ISSUER): expected an https:// address",
            ),
            (
                "MAILLON_OIDC_ISSUER",
                "idp.example",
                "oidc.issuer (from MAILLON_OIDC_ISSUER): not a URL",
            ),
            (
                "MAILLON_OIDC_REDIRECT_URL",
                "https://console.example/retour",
                "ends in /connexion/oidc/retour",
            ),
            (
                "MAILLON_OIDC_REDIRECT_URL",
                "https://console.example/connexion/oidc/retour?x=1",
                "ends in /connexion/oidc/retour",
            ),
            (
                "MAILLON_OIDC_REDIRECT_URL",
                "http://console.example/connexion/oidc/retour",
                "expected an https:// address",
            ),
            (
                "MAILLON_OIDC_CLIENT_ID",
                " ",
                "oidc.client_id (from MAILLON_OIDC_CLIENT_ID): empty",
            ),
            ("MAILLON_OIDC_CLAIM", "e-mail", "a claim name"),
            (
                "MAILLON_OIDC_SCOPES",
                "email profile",
                "the scopes must include openid",
            ),
        ] {
            let r = refusal(dir.path(), &[(variable, value)]);
            assert!(r.contains(expected), "{variable}={value}: {r}");
        }
        let unknown = folder(&format!(
            "console_listen = \"127.0.0.1:7404\"\n{TOML}{OIDC}secret = \"x\"\n"
        ));
        assert!(refusal(unknown.path(), &[]).contains("secret"));
    }

    #[test]
    fn the_consoles_certificate_needs_its_key_and_a_console() {
        let both = "console_tls_cert = \"console.crt\"\nconsole_tls_key = \"console.key\"\n";
        let dir = folder(&format!(
            "console_listen = \"127.0.0.1:7404\"\n{both}{TOML}"
        ));
        let c = Config::load_with_env(dir.path(), env(&[])).expect("loads");
        assert_eq!(
            c.console_tls,
            Some((
                dir.path().join("console.crt"),
                dir.path().join("console.key")
            ))
        );
        let alone = folder(&format!(
            "console_listen = \"127.0.0.1:7404\"\nconsole_tls_cert = \"c.crt\"\n{TOML}"
        ));
        assert!(refusal(alone.path(), &[]).contains("go together"));
        let no_console = folder(&format!("{both}{TOML}"));
        assert!(refusal(no_console.path(), &[]).contains("set console_listen too"));
    }

    #[test]
    fn the_example_in_deploy_loads_and_documents_every_setting() {
        let example = include_str!("../../deploy/node.toml.example");
        let dir = folder(example);
        let c = Config::load_with_env(dir.path(), env(&[])).expect("the example loads");
        assert_eq!(
            c.limits,
            Limits::default(),
            "the example shows the defaults"
        );
        assert!(c.metrics_listen.is_some());
        for path in setting_paths() {
            let key = path.rsplit('.').next().expect("a key");
            // A setting of a table the example leaves off is shown commented.
            assert!(
                example.lines().any(|l| {
                    let l = l.strip_prefix("# ").unwrap_or(l);
                    l.starts_with(&format!("{key} = "))
                }),
                "{path} is not in deploy/node.toml.example"
            );
        }
    }
}
