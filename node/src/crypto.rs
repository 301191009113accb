//! Keys, domain-separated signatures, key files, and TLS pinned by SPKI hash.
//!
//! Every signature Maillon makes covers `maillon/v1/<context> || 0x00 || message`,
//! so no signed object can be replayed as another kind. Secret key types have no
//! `Debug` and are never logged.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::Signer;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::types::MemberId;

/// Errors from key handling and TLS set-up.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is readable or writable by others than its owner.
    #[error("key file {path} has mode {mode:o}; it must be 0600 (chmod 600 it)")]
    Permissions {
        /// The file or folder concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A private folder (the node's, its store's, its log's) is open to others.
    #[error("folder {path} has mode {mode:o}; it must be 0700 (chmod 700 it)")]
    FolderPermissions {
        /// The folder concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key or certificate could not be decoded.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// Certificate generation or TLS configuration failed.
    #[error("tls: {0}")]
    Tls(String),
    /// A dossier's key is gone (the dossier was erased) or never existed.
    #[error("no key for dossier {0}")]
    NoDossierKey(String),
    /// Data sealed at rest does not open under its dossier's key.
    #[error("sealed data of dossier {0} does not open")]
    Unsealable(String),
}

/// What a signature is about; part of every signed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A roster version.
    Roster,
    /// A read request from a reader node to an owner node.
    Request,
    /// An owner's receipt for a read it answered.
    Receipt,
    /// A recorded consent.
    Consent,
    /// A node's export of its log for auditors (the bundle's manifest).
    AuditExport,
    /// A member's entry in the shared census of aids.
    Census,
    /// An orientation of a person to another member, or a step of it.
    Orientation,
    /// A vigilance alert, or its recipient's acknowledgement.
    Alert,
    /// A member's counts for the federation's indicators.
    Indicators,
    /// A coordination commission's convocation, or its minutes.
    Commission,
}

impl Context {
    fn label(self) -> &'static [u8] {
        match self {
            Context::Roster => b"maillon/v1/roster",
            Context::Request => b"maillon/v1/request",
            Context::Receipt => b"maillon/v1/receipt",
            Context::Consent => b"maillon/v1/consent",
            Context::AuditExport => b"maillon/v1/audit-export",
            Context::Census => b"maillon/v1/census",
            Context::Orientation => b"maillon/v1/orientation",
            Context::Alert => b"maillon/v1/alert",
            Context::Indicators => b"maillon/v1/indicators",
            Context::Commission => b"maillon/v1/commission",
        }
    }

    fn message(self, msg: &[u8]) -> Vec<u8> {
        let label = self.label();
        let mut out = Vec::with_capacity(label.len() + 1 + msg.len());
        out.extend_from_slice(label);
        out.push(0);
        out.extend_from_slice(msg);
        out
    }
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A node's Ed25519 signing key. Deliberately not `Debug`.
pub struct NodeKey {
    key: ed25519_dalek::SigningKey,
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            key: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs `msg` under a domain-separation context.
    pub fn sign(&self, ctx: Context, msg: &[u8]) -> Signature {
        Signature(self.key.sign(&ctx.message(msg)))
    }

    /// Signs raw bytes with no Maillon context: only for formats that carry
    /// their own framing (C2SP signed notes).
    pub fn sign_note_text(&self, text: &[u8]) -> [u8; 64] {
        self.key.sign(text).to_bytes()
    }

    /// The 32-byte seed, for the MLS signer (which holds it in memory only).
    pub(crate) fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Writes the key as base64 to a new file created 0600.
    pub fn write_new(&self, path: &Path) -> Result<(), CryptoError> {
        write_secret_file(
            path,
            format!("{}\n", B64.encode(self.key.to_bytes())).as_bytes(),
        )
    }

    /// Reads a key file, refusing one that others can read.
    pub fn read(path: &Path) -> Result<Self, CryptoError> {
        let text = read_secret_file(path)?;
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| CryptoError::Malformed("signing key"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Malformed("signing key"))?;
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }
}

/// An Ed25519 public key; serialized as base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Verifies a signature made with [`NodeKey::sign`] under `ctx`.
    pub fn verify(&self, ctx: Context, msg: &[u8], sig: &Signature) -> Result<(), CryptoError> {
        self.0
            .verify_strict(&ctx.message(msg), &sig.0)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Verifies a raw signature over a C2SP note text.
    pub fn verify_note_text(&self, text: &[u8], sig: &[u8; 64]) -> Result<(), CryptoError> {
        self.0
            .verify_strict(text, &ed25519_dalek::Signature::from_bytes(sig))
            .map_err(|_| CryptoError::BadSignature)
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Parses 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Malformed("public key"))?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(Self)
            .map_err(|_| CryptoError::Malformed("public key"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", B64.encode(self.to_bytes()))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = B64.decode(s).map_err(serde::de::Error::custom)?;
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature; serialized as base64.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    /// The 64 raw bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }

    /// Parses 64 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 64] = bytes
            .try_into()
            .map_err(|_| CryptoError::Malformed("signature"))?;
        Ok(Self(ed25519_dalek::Signature::from_bytes(&arr)))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = B64.decode(s).map_err(serde::de::Error::custom)?;
        Signature::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Creates `path` with mode 0600 and writes `bytes`; fails if it exists.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let io = |source| CryptoError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// The per-dossier keys that seal a dossier's sections and identity record
/// at rest: one 32-byte key per dossier, in a 0600 file of a 0700 folder,
/// written and synced before anything sealed with it is stored. Erasing a
/// dossier destroys its key (overwritten, synced, unlinked, the folder
/// synced): what a log-structured store still keeps of its old pages can
/// no longer be read. XChaCha20-Poly1305 with a random 192-bit nonce; the
/// associated data names the dossier and the slot, so a sealed value cannot
/// be moved to another dossier or section.
pub struct DossierKeys {
    dir: PathBuf,
    cache: std::sync::Mutex<std::collections::HashMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for DossierKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DossierKeys")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The label of data sealed at rest, before the dossier id and the slot.
const AT_REST: &[u8] = b"maillon/v1/at-rest";

impl DossierKeys {
    /// The folder the keys are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (creating it 0700 if needed) the folder of dossier keys.
    pub fn open(dir: &Path) -> Result<Self, CryptoError> {
        create_private_dir(dir)?;
        check_private_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            cache: Default::default(),
        })
    }

    fn path(&self, dossier: &str) -> PathBuf {
        self.dir.join(format!("{dossier}.key"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, [u8; 32]>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the dossier's key if it has none (synced, folder included).
    /// Under the cache's lock, which every read of a key file takes too: two
    /// callers making the same key at once make it once, and none reads a
    /// file half written.
    pub fn create(&self, dossier: &str) -> Result<(), CryptoError> {
        let mut cache = self.lock();
        let path = self.path(dossier);
        if cache.contains_key(dossier) || path.exists() {
            return Ok(());
        }
        let key: [u8; 32] = rand::random();
        write_secret_file(&path, &key)?;
        sync_dir(&self.dir)?;
        cache.insert(dossier.to_owned(), key);
        Ok(())
    }

    /// Whether the dossier has a key here.
    pub fn holds(&self, dossier: &str) -> bool {
        self.lock().contains_key(dossier) || self.path(dossier).exists()
    }

    fn key(&self, dossier: &str) -> Result<[u8; 32], CryptoError> {
        // Held across the file read: a key read while it is destroyed never
        // comes back into the cache.
        let mut cache = self.lock();
        if let Some(k) = cache.get(dossier) {
            return Ok(*k);
        }
        let path = self.path(dossier);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CryptoError::NoDossierKey(dossier.to_owned()));
            }
            Err(source) => return Err(CryptoError::Io { path, source }),
        };
        let mode = fs::metadata(&path)
            .map_err(|source| CryptoError::Io {
                path: path.clone(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::Permissions { path, mode });
        }
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Malformed("dossier key"))?;
        cache.insert(dossier.to_owned(), key);
        Ok(key)
    }

    fn aad(dossier: &str, slot: &str) -> Vec<u8> {
        [AT_REST, b"\0", dossier.as_bytes(), b"/", slot.as_bytes()].concat()
    }

    /// Seals `plaintext` for the dossier's `slot` (`identity`, a section name).
    pub fn seal(
        &self,
        dossier: &str,
        slot: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.key(dossier)?.into());
        let nonce: [u8; 24] = rand::random();
        let aad = Self::aad(dossier, slot);
        let sealed = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unsealable(dossier.to_owned()))?;
        Ok([&nonce[..], &sealed].concat())
    }

    /// Opens what [`DossierKeys::seal`] sealed for the same dossier and slot.
    pub fn open_sealed(
        &self,
        dossier: &str,
        slot: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let Some((nonce, body)) = sealed.split_at_checked(24) else {
            return Err(CryptoError::Unsealable(dossier.to_owned()));
        };
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.key(dossier)?.into());
        let nonce: [u8; 24] = nonce
            .try_into()
            .map_err(|_| CryptoError::Unsealable(dossier.to_owned()))?;
        let aad = Self::aad(dossier, slot);
        cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unsealable(dossier.to_owned()))
    }

    /// Destroys the dossier's key: overwritten with zeros and synced,
    /// unlinked, the folder synced. `false` if it had none.
    pub fn destroy(&self, dossier: &str) -> Result<bool, CryptoError> {
        let mut cache = self.lock();
        cache.remove(dossier);
        let path = self.path(dossier);
        let io = |source| CryptoError::Io {
            path: path.clone(),
            source,
        };
        let mut f = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        f.write_all(&[0u8; 32]).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::remove_file(&path).map_err(io)?;
        sync_dir(&self.dir)?;
        drop(cache);
        Ok(true)
    }
}

/// Syncs a folder, so that a file created or removed in it is durable.
fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| CryptoError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// Reads a secret file after checking that only its owner may read or write it.
pub fn read_secret_file(path: &Path) -> Result<String, CryptoError> {
    let io = |source| CryptoError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read_to_string(path).map_err(io)
}

/// Creates `path` (and its parents) if absent and makes it 0700.
pub fn create_private_dir(path: &Path) -> Result<(), CryptoError> {
    let io = |source| CryptoError::Io {
        path: path.to_owned(),
        source,
    };
    fs::create_dir_all(path).map_err(io)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Refuses a folder that others than its owner may enter, read or write.
pub fn check_private_dir(path: &Path) -> Result<(), CryptoError> {
    let mode = fs::metadata(path)
        .map_err(|source| CryptoError::Io {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::FolderPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// SHA-256 of the SubjectPublicKeyInfo: what the roster pins for each member.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiHash(pub [u8; 32]);

impl SpkiHash {
    /// The pin of a DER certificate.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, CryptoError> {
        let ee = webpki::EndEntityCert::try_from(cert)
            .map_err(|_| CryptoError::Malformed("certificate"))?;
        Ok(Self(sha256(ee.subject_public_key_info().as_ref())))
    }
}

impl fmt::Display for SpkiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SpkiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiHash({self})")
    }
}

impl std::str::FromStr for SpkiHash {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(s).map_err(|_| CryptoError::Malformed("spki hash"))?;
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| CryptoError::Malformed("spki hash"))
    }
}

impl Serialize for SpkiHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SpkiHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A node's TLS identity: a key and a self-signed certificate (Ed25519 on
/// the peer API, ECDSA P-256 on the client API, which every stock gRPC
/// stack accepts). Deliberately not `Debug`.
#[derive(Clone)]
pub struct TlsIdentity {
    cert: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl TlsIdentity {
    /// A fresh Ed25519 key and a self-signed certificate naming the member:
    /// the peer API's identity, pinned by the roster.
    pub fn generate(member: &MemberId) -> Result<Self, CryptoError> {
        Self::generate_with(member, &rcgen::PKCS_ED25519)
    }

    /// A fresh ECDSA P-256 key and a self-signed certificate naming the
    /// member: the client API's identity, pinned by the users' profiles.
    /// Stock gRPC clients (grpcio, grpc-go, grpc-java, grpcurl) do not offer
    /// Ed25519 in their TLS handshakes; every one of them offers P-256.
    pub fn generate_for_clients(member: &MemberId) -> Result<Self, CryptoError> {
        Self::generate_with(member, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    fn generate_with(
        member: &MemberId,
        algorithm: &'static rcgen::SignatureAlgorithm,
    ) -> Result<Self, CryptoError> {
        let tls = |e: rcgen::Error| CryptoError::Tls(e.to_string());
        let key = rcgen::KeyPair::generate_for(algorithm).map_err(tls)?;
        let mut params =
            rcgen::CertificateParams::new(vec![format!("{member}.maillon")]).map_err(tls)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, member.as_str());
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let cert = params.self_signed(&key).map_err(tls)?;
        Ok(Self {
            cert: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
        })
    }

    /// The pin other nodes and clients check.
    pub fn spki_hash(&self) -> Result<SpkiHash, CryptoError> {
        SpkiHash::of_certificate(&self.cert)
    }

    /// Writes the key (0600) and the certificate (DER, base64 text) as new files.
    pub fn write_new(&self, key_path: &Path, cert_path: &Path) -> Result<(), CryptoError> {
        write_secret_file(
            key_path,
            format!("{}\n", B64.encode(&self.key_pkcs8)).as_bytes(),
        )?;
        fs::write(cert_path, format!("{}\n", B64.encode(self.cert.as_ref()))).map_err(|source| {
            CryptoError::Io {
                path: cert_path.to_owned(),
                source,
            }
        })
    }

    /// Reads the key (refusing loose permissions) and the certificate.
    pub fn read(key_path: &Path, cert_path: &Path) -> Result<Self, CryptoError> {
        let key = B64
            .decode(read_secret_file(key_path)?.trim())
            .map_err(|_| CryptoError::Malformed("tls key"))?;
        let cert_text = fs::read_to_string(cert_path).map_err(|source| CryptoError::Io {
            path: cert_path.to_owned(),
            source,
        })?;
        let cert = B64
            .decode(cert_text.trim())
            .map_err(|_| CryptoError::Malformed("tls certificate"))?;
        let this = Self {
            cert: CertificateDer::from(cert),
            key_pkcs8: key,
        };
        this.spki_hash()?;
        Ok(this)
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

/// Who may connect: maps a certificate pin to an active member, from the current roster.
pub trait PinLookup: Send + Sync + fmt::Debug {
    /// The active member pinned to this SPKI hash, if any.
    fn member_for(&self, pin: &SpkiHash) -> Option<MemberId>;
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error) -> CryptoError {
    CryptoError::Tls(e.to_string())
}

/// Checks a presented end-entity certificate against the pins.
fn check_pin(
    pins: &dyn PinLookup,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    if !intermediates.is_empty() {
        return Err(rustls::Error::General(
            "unexpected certificate chain: maillon pins single self-signed certificates".into(),
        ));
    }
    let pin = SpkiHash::of_certificate(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    if pins.member_for(&pin).is_none() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ));
    }
    Ok(())
}

/// Verifies that the peer holds the key of a certificate pinned in the roster.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Arc<dyn PinLookup>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pins: Arc<dyn PinLookup>) -> Self {
        Self {
            pins,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

/// The handshake-signature half of both verifier traits, which is the same
/// for a client and a server certificate: TLS 1.3 only, the provider's
/// algorithms (proof that the peer holds the pinned key).
macro_rules! tls13_handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls13RequiredForQuic,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_pin(&*self.pins, end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    tls13_handshake_signatures!();
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_pin(&*self.pins, end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    tls13_handshake_signatures!();
}

/// One pinned certificate: what a client of the client API trusts.
#[derive(Debug)]
pub struct SinglePin(pub SpkiHash);

impl PinLookup for SinglePin {
    fn member_for(&self, pin: &SpkiHash) -> Option<MemberId> {
        use subtle::ConstantTimeEq;
        if bool::from(pin.0.ct_eq(&self.0.0)) {
            "pinned-node".parse().ok()
        } else {
            None
        }
    }
}

fn tls13_server_builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, CryptoError> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)
}

fn tls13_client_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, CryptoError> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)
}

fn h2_only(alpn: &mut Vec<Vec<u8>>) {
    *alpn = vec![b"h2".to_vec()];
}

/// No session resumption: a resumed session would skip the pin check, and a
/// member suspended since must fail its next handshake.
fn no_resumption(cfg: &mut rustls::ServerConfig) {
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
}

/// Server side of the peer API: TLS 1.3, client certificate required and pinned.
pub fn peer_server_config(
    me: &TlsIdentity,
    pins: Arc<dyn PinLookup>,
) -> Result<rustls::ServerConfig, CryptoError> {
    let verifier = Arc::new(PinnedVerifier::new(pins));
    let mut cfg = tls13_server_builder()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![me.cert.clone()], me.private_key())
        .map_err(tls_error)?;
    h2_only(&mut cfg.alpn_protocols);
    no_resumption(&mut cfg);
    Ok(cfg)
}

/// Server side of the client API: TLS 1.3, no client certificate (users bring a token).
pub fn client_api_server_config(me: &TlsIdentity) -> Result<rustls::ServerConfig, CryptoError> {
    let mut cfg = tls13_server_builder()?
        .with_no_client_auth()
        .with_single_cert(vec![me.cert.clone()], me.private_key())
        .map_err(tls_error)?;
    h2_only(&mut cfg.alpn_protocols);
    no_resumption(&mut cfg);
    Ok(cfg)
}

/// A certificate the operator gives the web console, so that the staff's
/// browsers trust it as they trust the partner's other sites (its internal
/// authority, or a public one): a PEM chain, the server's first, and its key
/// (PEM, PKCS#8, SEC1 or PKCS#1), in a file only its owner may read.
pub struct OperatorCertificate {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for OperatorCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorCertificate")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl OperatorCertificate {
    /// Reads the chain at `cert` and the key at `key` (refused when others
    /// may read it), and checks that they go together.
    pub fn read(cert: &Path, key: &Path) -> Result<Self, CryptoError> {
        use rustls::pki_types::pem::PemObject;
        let pem = fs::read(cert).map_err(|source| CryptoError::Io {
            path: cert.to_owned(),
            source,
        })?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CryptoError::Tls(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(CryptoError::Tls(format!(
                "{}: no PEM certificate in it",
                cert.display()
            )));
        }
        let key_pem = read_secret_file(key)?;
        let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| CryptoError::Tls(format!("{}: {e}", key.display())))?;
        let this = Self {
            chain,
            key: key_der,
        };
        console_server_config(&this).map_err(|e| {
            CryptoError::Tls(format!(
                "{} and {} do not make a usable certificate: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        Ok(this)
    }
}

/// Server side of the web console with the operator's certificate: TLS 1.3,
/// HTTP/2 or HTTP/1.1.
pub fn console_server_config(
    certificate: &OperatorCertificate,
) -> Result<rustls::ServerConfig, CryptoError> {
    let key = certificate.key.clone_key();
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(tls_error)?;
    let certified = rustls::sign::CertifiedKey::new(certificate.chain.clone(), signing);
    certified.keys_match().map_err(tls_error)?;
    let mut cfg = tls13_server_builder()?
        .with_no_client_auth()
        .with_single_cert(certificate.chain.clone(), key)
        .map_err(tls_error)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Client side of the peer API: presents our certificate, pins the server's to
/// the one the roster lists for the member we dial.
pub fn peer_client_config(
    me: &TlsIdentity,
    expected: SpkiHash,
) -> Result<rustls::ClientConfig, CryptoError> {
    let verifier = Arc::new(PinnedVerifier::new(Arc::new(SinglePin(expected))));
    let mut cfg = tls13_client_builder()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![me.cert.clone()], me.private_key())
        .map_err(tls_error)?;
    h2_only(&mut cfg.alpn_protocols);
    Ok(cfg)
}

/// Client side of the client API: pins the node's certificate, no client certificate.
pub fn pinned_client_config(pin: SpkiHash) -> Result<rustls::ClientConfig, CryptoError> {
    let verifier = Arc::new(PinnedVerifier::new(Arc::new(SinglePin(pin))));
    let mut cfg = tls13_client_builder()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    h2_only(&mut cfg.alpn_protocols);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_do_not_cross_contexts() {
        let k = NodeKey::generate();
        let sig = k.sign(Context::Request, b"hello");
        assert!(k.public().verify(Context::Request, b"hello", &sig).is_ok());
        assert!(k.public().verify(Context::Receipt, b"hello", &sig).is_err());
        assert!(k.public().verify(Context::Request, b"hellp", &sig).is_err());
    }

    #[test]
    fn key_files_are_created_0600_and_loose_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        let k = NodeKey::generate();
        k.write_new(&path).expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(NodeKey::read(&path).expect("read").public(), k.public());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            NodeKey::read(&path),
            Err(CryptoError::Permissions { .. })
        ));
        assert!(
            k.write_new(&path).is_err(),
            "an existing key is never overwritten"
        );
    }

    #[test]
    fn tls_identity_round_trips_with_a_stable_pin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let member = "cd12".parse().expect("id");
        for (name, id) in [
            ("peer", TlsIdentity::generate(&member).expect("gen")),
            (
                "client",
                TlsIdentity::generate_for_clients(&member).expect("gen"),
            ),
        ] {
            let k = dir.path().join(format!("{name}.key"));
            let c = dir.path().join(format!("{name}.crt"));
            id.write_new(&k, &c).expect("write");
            let mode = fs::metadata(&k).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let back = TlsIdentity::read(&k, &c).expect("read");
            assert_eq!(back.spki_hash().expect("pin"), id.spki_hash().expect("pin"));
            // Each serves, and a pinned client of ours accepts it.
            client_api_server_config(&back).expect("serves");
        }
    }

    #[test]
    fn dossier_keys_seal_per_slot_and_erasure_destroys_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = DossierKeys::open(&dir.path().join("dossier-keys")).expect("open");
        keys.create("DSU-A").expect("create");
        let mode = fs::metadata(dir.path().join("dossier-keys/DSU-A.key"))
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = keys.seal("DSU-A", "housing", b"secret").expect("seal");
        assert_eq!(
            keys.open_sealed("DSU-A", "housing", &sealed).expect("open"),
            b"secret"
        );
        assert!(
            keys.open_sealed("DSU-A", "resources", &sealed).is_err(),
            "another slot"
        );
        keys.create("DSU-B").expect("create");
        assert!(
            keys.open_sealed("DSU-B", "housing", &sealed).is_err(),
            "another dossier"
        );
        assert!(
            keys.open_sealed("DSU-A", "housing", &sealed[..20]).is_err(),
            "cut short"
        );
        assert!(keys.destroy("DSU-A").expect("destroy"));
        assert!(!keys.destroy("DSU-A").expect("twice"));
        assert!(matches!(
            keys.open_sealed("DSU-A", "housing", &sealed),
            Err(CryptoError::NoDossierKey(_))
        ));
        let reopened = DossierKeys::open(&dir.path().join("dossier-keys")).expect("reopen");
        assert!(reopened.open_sealed("DSU-A", "housing", &sealed).is_err());
    }
}
