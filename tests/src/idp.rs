//! A real OpenID provider for the console's tests: `oidc-provider` (npm,
//! a fixed version, installed once under `target/` beside axe-core) run by
//! Node.js over HTTPS, with a certificate from a test authority.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use maillon_node::crypto::SpkiHash;

/// The `oidc-provider` release the tests run.
pub const OIDC_PROVIDER_VERSION: &str = "9.13.3";

/// The client the console is registered as.
pub const CLIENT_ID: &str = "maillon-console";

/// A running provider, stopped when dropped.
pub struct Provider {
    child: Child,
    /// Its issuer URL (`https://127.0.0.1:PORT`).
    pub issuer: String,
    /// The PEM certificate of the authority that signed its certificate.
    pub ca_pem: String,
    /// The pin of its certificate, for the browser.
    pub pin: SpkiHash,
    /// The client secret the console is registered with.
    pub secret: String,
    _files: tempfile::TempDir,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts a provider that knows the console at `console` (`https://HOST:PORT`).
    pub fn start(console: &str) -> Self {
        let prefix = crate::browser::npm_tools();
        let files = tempfile::tempdir().expect("a folder");
        let issued = crate::authority::issue("127.0.0.1");
        let (key_path, cert_path) = (files.path().join("key.pem"), files.path().join("cert.pem"));
        std::fs::write(&key_path, &issued.key_pem).expect("written");
        std::fs::write(&cert_path, &issued.cert_pem).expect("written");
        let secret = hex::encode(rand::random::<[u8; 24]>());
        // Beside its node_modules: an ES module finds its packages there.
        let script = prefix.join("maillon-idp.mjs");
        std::fs::write(&script, include_str!("../idp/idp.mjs")).expect("the script");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(&key_path)
            .arg(&cert_path)
            .arg(CLIENT_ID)
            .arg(&secret)
            .arg(format!(
                "{console}{}",
                maillon_node::config::OIDC_RETURN_PATH
            ))
            .arg(format!("{console}/"))
            .current_dir(&prefix)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("its output");
        let mut line = String::new();
        let mut output = BufReader::new(stdout);
        output
            .read_line(&mut line)
            .expect("the provider says where it listens");
        // The rest of its output is read (and dropped) for as long as it
        // runs: a closed pipe would end it at its next line.
        std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
            .to_owned();
        Self {
            child,
            issuer: format!("https://127.0.0.1:{port}"),
            ca_pem: issued.authority_pem,
            pin: issued.pin,
            secret,
            _files: files,
        }
    }

    /// The `[oidc]` table of a `node.toml` that logs the console's staff in
    /// here, naming users by `claim`; writes the secret and the authority
    /// into the node folder `dir`.
    pub fn configure(&self, dir: &std::path::Path, console: &str, claim: &str) -> String {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut secret = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("oidc-client-secret"))
            .expect("the secret file");
        secret.write_all(self.secret.as_bytes()).expect("written");
        std::fs::write(dir.join("oidc-ca.pem"), &self.ca_pem).expect("written");
        format!(
            "\n[oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"oidc-client-secret\"\nredirect_url = \"{console}{}\"\nclaim = \"{claim}\"\nscopes = \"openid email\"\nca_file = \"oidc-ca.pem\"\n",
            self.issuer,
            maillon_node::config::OIDC_RETURN_PATH
        )
    }
}
