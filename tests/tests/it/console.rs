//! The web console over HTTPS on a real node: French pages, the security
//! headers every answer carries, the stylesheet, French error pages.

use std::sync::Arc;

use maillon_node::clock::Clock;
use maillon_node::config::Config;
use maillon_tests::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTPS/1.1 request to the console of `c`'s `id`, its certificate
/// checked against the pin of the member's admin profile: the status, the
/// headers (lower-case names) and the body.
async fn https(
    c: &Cluster,
    id: &str,
    method: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, String) {
    let addr = c
        .running(id)
        .node()
        .listening()
        .and_then(|l| l.console)
        .expect("console served");
    let pin = c.node(id).admin.server_spki_sha256;
    let mut config = maillon_node::crypto::pinned_client_config(pin).expect("config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("console.maillon").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the pinned handshake");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_console_serves_french_pages_with_a_strict_policy_and_no_script() {
    let mut c = Cluster::start().await;
    let clock: Arc<dyn Clock> = c.clock.clone();
    let node = c.fed.node_mut("caf12");
    node.stop().await;
    let toml = Config::file(&node.dir);
    let text = std::fs::read_to_string(&toml).expect("node.toml");
    std::fs::write(&toml, format!("console_listen = \"127.0.0.1:0\"\n{text}")).expect("write");
    node.start(clock).await.expect("starts with its console");

    let (status, headers, body) = https(&c, "caf12", "GET", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#"<html lang="fr">"#));
    // Text from the roster is escaped.
    assert!(body.contains("Console de CAF de l&#39;Aveyron"), "{body}");
    assert!(body.contains(r##"href="#contenu""##), "a skip link");
    assert!(!body.contains("<script"), "no script");
    assert_eq!(
        header(&headers, "content-security-policy"),
        Some(maillon_node::console::CONTENT_SECURITY_POLICY)
    );
    assert!(
        header(&headers, "strict-transport-security").is_some_and(|v| v.starts_with("max-age="))
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("text/html")));

    let (status, headers, css) = https(&c, "caf12", "GET", "/static/maillon.css").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|v| v.starts_with("text/css")));
    assert!(css.contains(":focus"), "a visible focus");

    let (status, headers, body) = https(&c, "caf12", "GET", "/dossiers/DSU-inconnu").await;
    assert_eq!(status, 404);
    assert!(body.contains("Page introuvable"), "{body}");
    assert!(header(&headers, "content-security-policy").is_some());
    let (status, _, _) = https(&c, "caf12", "POST", "/").await;
    assert_eq!(status, 405);

    // Off unless configured.
    assert!(
        c.running("ccas-rodez")
            .node()
            .listening()
            .and_then(|l| l.console)
            .is_none()
    );
}
