//! A certificate authority made for one test, and a server certificate it
//! signs: what a partner's internal authority gives its hosts.

use maillon_node::crypto::SpkiHash;

/// A server certificate and what vouches for it.
pub struct Issued {
    /// The authority's certificate, PEM (what clients trust).
    pub authority_pem: String,
    /// The server's certificate, PEM.
    pub cert_pem: String,
    /// The server's key, PEM.
    pub key_pem: String,
    /// The pin of the server's certificate.
    pub pin: SpkiHash,
}

/// A new authority and a certificate it signs for `name` (a DNS name or an
/// IP address).
pub fn issue(name: &str) -> Issued {
    let authority_key = rcgen::KeyPair::generate().expect("a key");
    let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Autorité de test");
    let authority =
        rcgen::CertifiedIssuer::self_signed(authority, authority_key).expect("an authority");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .signed_by(&key, &authority)
        .expect("a certificate");
    Issued {
        authority_pem: authority.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        pin: SpkiHash::of_certificate(cert.der()).expect("a pin"),
    }
}
