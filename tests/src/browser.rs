//! A real browser for the console's tests: Debian's `chromium`, headless,
//! driven through `chromedriver` (package `chromium-driver`) by W3C
//! WebDriver over HTTP on loopback, with the few commands the tests use.
//! The consoles' certificates are pinned (`--ignore-certificate-errors-spki-list`
//! with the SPKI hashes the admin profiles hold), never accepted blindly.
//! `axe-core` (npm, a fixed version, installed once under `target/`) checks
//! each page against the WCAG 2.1 A and AA rules an automated check can test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The axe-core version the tests run.
pub const AXE_VERSION: &str = "4.14.1";

/// The WCAG rule sets axe checks: 2.0 and 2.1, levels A and AA (what the
/// RGAA asks that an automated check can test).
const AXE_TAGS: [&str; 4] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

/// The build folder (`target/`), beside the test binary's `deps/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target/")
        .to_path_buf()
}

/// Where the tests write the consoles' screenshots for review.
pub fn screenshots_dir() -> PathBuf {
    let dir = target_dir().join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshots' folder");
    dir
}

/// The packages the browser tests take from the npm registry, at fixed
/// versions: axe-core, and the OpenID provider (`crate::idp`).
fn npm_packages() -> [(&'static str, &'static str); 2] {
    [
        ("axe-core", AXE_VERSION),
        ("oidc-provider", crate::idp::OIDC_PROVIDER_VERSION),
    ]
}

/// Installs the npm packages into `target/browser-tools` once (tests run
/// in parallel: one installs while the others wait), and returns the folder.
pub fn npm_tools() -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let prefix = target_dir().join("browser-tools");
    let installed = |(name, version): &(&str, &str)| {
        let manifest = prefix.join("node_modules").join(name).join("package.json");
        std::fs::read_to_string(manifest)
            .is_ok_and(|p| p.contains(&format!("\"version\": \"{version}\"")))
    };
    let packages = npm_packages();
    if !packages.iter().all(installed) {
        let specs: Vec<String> = packages.iter().map(|(n, v)| format!("{n}@{v}")).collect();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .args(&specs)
            .status()
            .expect("npm (Node.js) runs: install it, as .ci/run does");
        assert!(status.success(), "npm install {} failed", specs.join(" "));
    }
    prefix
}

/// axe-core's script, installed from the npm registry into `target/` once.
pub fn axe_script() -> String {
    let script = npm_tools()
        .join("node_modules")
        .join("axe-core")
        .join("axe.min.js");
    std::fs::read_to_string(&script).expect("axe.min.js")
}

/// One `chromedriver` process, freed when dropped.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port; fails with how to
    /// install it when Debian's packages are missing.
    pub async fn start() -> Self {
        for (binary, package) in [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
        ] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: install Debian's {package} (`apt-get install chromium chromium-driver`, as .ci/run does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self { child, port };
        for _ in 0..100 {
            if let Ok((200, _)) = driver.call("GET", "/status", None).await {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not answer on port {port}");
    }

    /// One WebDriver command: its status code and its JSON `value`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> std::io::Result<(u16, Value)> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        // chromedriver may keep the connection open: read the head, then
        // the body its length announces (or its chunks, to the last).
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break raw.len();
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = head.contains("transfer-encoding: chunked");
        loop {
            let body = &raw[head_end..];
            let complete = match length {
                Some(n) => body.len() >= n,
                None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
                None => false,
            };
            if complete {
                break;
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
        let body = if chunked { dechunk(&rest) } else { rest };
        let value = serde_json::from_str::<Value>(&body)
            .map(|v| v["value"].clone())
            .unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// A new browser session (its own profile), trusting only the
    /// certificates whose SPKI SHA-256 is in `pins`.
    pub async fn session(&self, pins: &[maillon_node::crypto::SpkiHash]) -> Browser<'_> {
        let spki: Vec<String> = pins
            .iter()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p.0))
            .collect();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1024",
                    "--lang=fr-FR",
                    format!("--ignore-certificate-errors-spki-list={}", spki.join(",")),
                ],
            },
        }}});
        let (status, value) = self
            .call("POST", "/session", Some(capabilities))
            .await
            .expect("chromedriver answers");
        assert_eq!(status, 200, "no browser session: {value}");
        let id = value["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser { driver: self, id }
    }
}

/// A chunked HTTP body, whole.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One browser window, closed when the test calls [`Browser::close`].
pub struct Browser<'d> {
    driver: &'d Driver,
    id: String,
}

/// A page element (its WebDriver reference).
#[derive(Clone, Debug)]
pub struct Element(String);

/// The key WebDriver sends for Tab.
pub const TAB: &str = "\u{E004}";
/// The key WebDriver sends for Enter.
pub const ENTER: &str = "\u{E007}";

impl Browser<'_> {
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.id);
        let (status, value) = self
            .driver
            .call(method, &path, body)
            .await
            .expect("chromedriver answers");
        assert_eq!(status, 200, "{method} {path}: {value}");
        value
    }

    /// Loads `url` and waits for the page.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The address shown.
    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The text the page shows (asked again while a page is replacing the
    /// previous one).
    pub async fn text(&self) -> String {
        let path = format!("/session/{}/execute/sync", self.id);
        let script = json!({"script": "return document.readyState === 'complete' ? document.body.innerText : null", "args": []});
        for _ in 0..100 {
            if let Ok((200, Value::String(text))) =
                self.driver.call("POST", &path, Some(script.clone())).await
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never finished loading");
    }

    /// The first element `css` selects.
    pub async fn find(&self, css: &str) -> Element {
        let value = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        Element(
            value
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no element {css}"))
                .to_owned(),
        )
    }

    /// Clicks the first element `css` selects.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})))
            .await;
    }

    /// Runs a script in the page (outside its CSP); its result (null on an error).
    pub async fn script(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.id);
        let body = json!({"script": script, "args": []});
        match self.driver.call("POST", &path, Some(body)).await {
            Ok((200, v)) => v,
            _ => Value::Null,
        }
    }

    /// Clicks what `css` selects and waits until another page has replaced
    /// this one (a link followed, a form sent), as a person waits.
    pub async fn follow(&self, css: &str) {
        self.script("window.maillonAvant = true; return true").await;
        self.click(css).await;
        self.wait_new_page().await;
    }

    /// Sends keys to the focused element, then waits for the page they load.
    pub async fn keys_to_load(&self, text: &str) {
        self.script("window.maillonAvant = true; return true").await;
        self.keys(text).await;
        self.wait_new_page().await;
    }

    async fn wait_new_page(&self) {
        let ready =
            "return window.maillonAvant === undefined && document.readyState === 'complete'";
        for _ in 0..200 {
            if self.script(ready).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new page within 10 s");
    }

    /// Waits until the page's text holds `needle` (pages that move on by
    /// themselves: redirects, a refresh), and returns the text.
    pub async fn wait_text(&self, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..200 {
            if self
                .script("return document.readyState === 'complete'")
                .await
                == Value::Bool(true)
            {
                text = self.text().await;
                if text.contains(needle) {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = self.url().await;
        panic!("no page with {needle:?} within 10 s; the page at {url} says:\n{text}");
    }

    /// Types `text` into the first element `css` selects, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Sends keys to the element that has the focus.
    pub async fn keys(&self, text: &str) {
        let active = self.cmd("GET", "/element/active", None).await;
        let id = active
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("a focused element")
            .to_owned();
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The `id` attribute of the element that has the focus.
    pub async fn focused_id(&self) -> String {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": "return document.activeElement ? document.activeElement.id : ''", "args": []})),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Writes a PNG of the window to `target/console-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.cmd("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a PNG");
        let path = screenshots_dir().join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("the screenshot is written");
        path
    }

    /// The WCAG 2.1 A/AA violations axe-core finds on the page, one line
    /// each (rule, impact, the elements concerned).
    pub async fn accessibility_violations(&self, axe: &str) -> Vec<String> {
        // WebDriver's scripts run outside the page's CSP, which allows none.
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": format!("{axe}\nreturn true;"), "args": []})),
        )
        .await;
        let script = format!(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {{ runOnly: {{ type: 'tag', values: {tags} }} }})
                .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
                .catch(e => done(['axe failed: ' + e]));",
            tags = serde_json::to_string(&AXE_TAGS).unwrap_or_default()
        );
        let found = self
            .cmd(
                "POST",
                "/execute/async",
                Some(json!({"script": script, "args": []})),
            )
            .await;
        found
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends the session and its browser.
    pub async fn close(self) {
        let path = format!("/session/{}", self.id);
        let _ = self.driver.call("DELETE", &path, None).await;
    }
}
