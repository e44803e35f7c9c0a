//! A certificate authority made for one test (rcgen): a server certificate for 127.0.0.1 (and
//! `localhost`) and a client certificate, both signed by it, and the PEM files a collector's
//! `[export.otlp.tls]` names.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The authority and what it signed.
pub struct Pki {
    /// The CA certificate (PEM file).
    pub ca_file: PathBuf,
    /// The client's certificate (PEM file).
    pub client_cert_file: PathBuf,
    /// The client's private key (PEM file, PKCS#8).
    pub client_key_file: PathBuf,
    ca: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

/// A certificate for `name` (and `ip`, when given) signed by `issuer`.
fn leaf(
    name: &str,
    ip: Option<IpAddr>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("a valid name");
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages.push(KeyUsagePurpose::DigitalSignature);
    params.extended_key_usages.push(usage);
    params.subject_alt_names.extend(ip.map(SanType::IpAddress));
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert, key)
}

impl Pki {
    /// A new authority; its files are written into `dir`.
    pub fn new(dir: &Path) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "shmtel test CA");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_key = KeyPair::generate().expect("a key");
        let ca = params.self_signed(&ca_key).expect("self-signed");
        let issuer = Issuer::new(params, ca_key);
        let loopback = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (server, server_key) = leaf(
            "localhost",
            loopback,
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let (client, client_key) =
            leaf("worker", None, ExtendedKeyUsagePurpose::ClientAuth, &issuer);

        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("write a PEM file");
            p
        };
        Pki {
            ca_file: write("ca.pem", ca.pem()),
            client_cert_file: write("client.pem", client.pem()),
            client_key_file: write("client.key", client_key.serialize_pem()),
            ca: ca.der().clone(),
            server_cert: server.der().clone(),
            server_key: server_key.serialize_der(),
        }
    }

    /// The receiver's TLS: its certificate, and the client's required (signed by this
    /// authority) when `client_auth`.
    pub fn server_config(&self, client_auth: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.clone()).expect("the CA as a root");
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        Arc::new(
            builder
                .with_single_cert(vec![self.server_cert.clone(), self.ca.clone()], key)
                .expect("the server certificate"),
        )
    }
}
