//! TLS for the network exporters' `https://` endpoints (rustls, through ureq).
//!
//! The server is verified against Mozilla's root certificates, built in (`webpki-roots`: a
//! container without a CA bundle still reaches hosted backends), or against the CA
//! certificates of `ca_file` instead (a private CA). `cert_file` and `key_file` give the client
//! certificate chain and key for mutual TLS. The keys and their meaning are the OpenTelemetry
//! Collector's `tls` settings; the OpenTelemetry SDK variables `OTEL_EXPORTER_OTLP_CERTIFICATE`,
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (and their
//! per-signal forms) set them for the OTLP exporters. Certificate verification cannot be turned
//! off. Plain `http://` endpoints ignore these settings.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// `[<exporter>.tls]`: the files of an `https://` endpoint's TLS. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// PEM file of the CA certificates that verify the server, in place of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client's certificate chain, for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Lay the files `over` names over these (the environment's over the configuration's).
    pub fn overlay(&mut self, over: &TlsFiles) {
        for (mine, theirs) in [
            (&mut self.ca_file, &over.ca_file),
            (&mut self.cert_file, &over.cert_file),
            (&mut self.key_file, &over.key_file),
        ] {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
    }

    /// The TLS configuration these files give, read and checked now: an unreadable file, one
    /// without what it must hold, or a certificate without its key is an error that names the
    /// file.
    pub fn load(&self) -> Result<TlsConfig, String> {
        let mut builder = TlsConfig::builder();
        if let Some(path) = &self.ca_file {
            let certs = certificates(path, "ca_file")?;
            builder = builder.root_certs(RootCerts::new_with_certs(&certs));
        }
        match (&self.cert_file, &self.key_file) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "cert_file")?;
                let key = private_key(key)?;
                builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
            }
            (Some(_), None) => return Err("cert_file is set without key_file".into()),
            (None, Some(_)) => return Err("key_file is set without cert_file".into()),
        }
        Ok(builder.build())
    }
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

/// The certificates of the PEM file `path` (at least one).
fn certificates(path: &Path, key: &str) -> Result<Vec<Certificate<'static>>, String> {
    let pem = read(path, key)?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{key} {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key of the PEM file `path`.
fn private_key(path: &Path) -> Result<PrivateKey<'static>, String> {
    let pem = read(path, "key_file")?;
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::PrivateKey(k)) => return Ok(k),
            Ok(_) => {}
            Err(e) => return Err(format!("key_file {}: {e}", path.display())),
        }
    }
    Err(format!(
        "key_file {}: no PEM private key in it",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> TlsFiles {
        TlsFiles {
            ca_file: ca.map(Path::to_path_buf),
            cert_file: cert.map(Path::to_path_buf),
            key_file: key.map(Path::to_path_buf),
        }
    }

    #[test]
    fn good_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["worker".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        assert!(TlsFiles::default().load().is_ok());
        let config = files(Some(&c), Some(&c), Some(&k)).load().unwrap();
        assert!(matches!(config.root_certs(), RootCerts::Specific(v) if v.len() == 1));
        assert_eq!(config.client_cert().unwrap().certs().len(), 1);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let err = |f: TlsFiles| f.load().map(|_| ()).unwrap_err();
        let e = err(files(Some(&missing), None, None));
        assert!(
            e.starts_with("ca_file ") && e.contains("missing.pem"),
            "{e}"
        );
        let e = err(files(Some(&text), None, None));
        assert!(e.contains("text.pem: no PEM certificate in it"), "{e}");
        assert_eq!(
            err(files(None, Some(&text), None)),
            "cert_file is set without key_file"
        );
        assert_eq!(
            err(files(None, None, Some(&text))),
            "key_file is set without cert_file"
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["w".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let c = dir.path().join("c.pem");
        std::fs::write(&c, cert.pem()).unwrap();
        let e = err(files(None, Some(&c), Some(&c)));
        assert!(e.contains("c.pem: no PEM private key in it"), "{e}");
    }

    #[test]
    fn the_environments_files_win() {
        let mut mine = files(Some(Path::new("a")), Some(Path::new("b")), None);
        mine.overlay(&files(
            None,
            Some(Path::new("env-b")),
            Some(Path::new("env-c")),
        ));
        assert_eq!(
            mine,
            files(
                Some(Path::new("a")),
                Some(Path::new("env-b")),
                Some(Path::new("env-c"))
            )
        );
    }
}
