//! The OpenTelemetry SDK environment variables the exporters honour.
//!
//! Empty values count as unset, as the specification says. The signal-specific variables
//! (`OTEL_EXPORTER_OTLP_TRACES_*` for the span exporter, `OTEL_EXPORTER_OTLP_LOGS_*` for the
//! OTLP log sink) win over the general ones.

use super::tls::TlsFiles;
use super::Compression;

/// What the `OTEL_*` environment variables say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtelEnv {
    /// The full traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended.
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS` then `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (URL-decoded).
    pub headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`: `gzip` or `none`.
    pub compression: Option<Compression>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, milliseconds.
    pub timeout_ms: Option<u64>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`, `..._CLIENT_CERTIFICATE`, `..._CLIENT_KEY`.
    pub tls: TlsFiles,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES` (URL-decoded), in order.
    pub resource_attributes: Vec<(String, String)>,
    /// What the variables say for the logs signal (`OTEL_EXPORTER_OTLP_LOGS_*` over the
    /// general ones).
    pub logs: SignalEnv,
}

/// The OTLP exporter variables of one signal, the specific ones laid over the general ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignalEnv {
    /// The full URL: `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT` as is, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/<signal>` appended.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS` then `OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS` (URL-decoded;
    /// a later header replaces an earlier one of the same name).
    pub headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_[<SIGNAL>_]COMPRESSION`: `gzip` or `none`.
    pub compression: Option<Compression>,
    /// `OTEL_EXPORTER_OTLP_[<SIGNAL>_]TIMEOUT`, milliseconds.
    pub timeout_ms: Option<u64>,
    /// `OTEL_EXPORTER_OTLP_[<SIGNAL>_]CERTIFICATE` (`ca_file`), `..._CLIENT_CERTIFICATE`
    /// (`cert_file`) and `..._CLIENT_KEY` (`key_file`).
    pub tls: TlsFiles,
}

impl SignalEnv {
    /// Read the variables of `signal` (`TRACES`, `LOGS`; its URL path is `/v1/<signal in
    /// lowercase>`) through `get`.
    pub fn read(signal: &str, get: impl Fn(&str) -> Option<String>) -> Result<SignalEnv, String> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let specific = |what: &str| format!("OTEL_EXPORTER_OTLP_{signal}_{what}");
        let either = |what: &str| {
            let s = specific(what);
            let g = format!("OTEL_EXPORTER_OTLP_{what}");
            get(&s).map(|v| (s, v)).or_else(|| get(&g).map(|v| (g, v)))
        };
        let path = format!("/v1/{}", signal.to_ascii_lowercase());
        let endpoint = match get(&specific("ENDPOINT")) {
            Some(e) => Some(e.trim().to_owned()),
            None => get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| format!("{}{path}", base.trim().trim_end_matches('/'))),
        };
        let mut headers = Vec::new();
        for k in ["OTEL_EXPORTER_OTLP_HEADERS".to_owned(), specific("HEADERS")] {
            if let Some(v) = get(&k) {
                for (name, value) in parse_pairs(&v).map_err(|e| format!("{k}: {e}"))? {
                    headers.retain(|(n, _): &(String, String)| !n.eq_ignore_ascii_case(&name));
                    headers.push((name, value));
                }
            }
        }
        let compression = match either("COMPRESSION") {
            Some((k, v)) => Some(match v.trim() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                other => return Err(format!("{k}: {other:?} is not gzip or none")),
            }),
            None => None,
        };
        let timeout_ms = match either("TIMEOUT") {
            Some((k, v)) => Some(
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&t| t > 0)
                    .ok_or_else(|| format!("{k}: {v:?} is not a positive number of ms"))?,
            ),
            None => None,
        };
        let file = |what: &str| either(what).map(|(_, v)| v.trim().into());
        let tls = TlsFiles {
            ca_file: file("CERTIFICATE"),
            cert_file: file("CLIENT_CERTIFICATE"),
            key_file: file("CLIENT_KEY"),
        };
        Ok(SignalEnv {
            endpoint,
            headers,
            compression,
            timeout_ms,
            tls,
        })
    }
}

impl OtelEnv {
    /// Read the variables through `get` (`std::env::var` in the daemon, a map in tests).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<OtelEnv, String> {
        let logs = SignalEnv::read("LOGS", &get)?;
        let traces = SignalEnv::read("TRACES", &get)?;
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(v) => parse_pairs(&v).map_err(|e| format!("OTEL_RESOURCE_ATTRIBUTES: {e}"))?,
            None => Vec::new(),
        };
        Ok(OtelEnv {
            traces_endpoint: traces.endpoint,
            headers: traces.headers,
            compression: traces.compression,
            timeout_ms: traces.timeout_ms,
            tls: traces.tls,
            service_name: get("OTEL_SERVICE_NAME").map(|s| s.trim().to_owned()),
            resource_attributes,
            logs,
        })
    }
}

/// `<base>/v1/traces`.
pub fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// `k=v,k2=v2` (W3C Baggage-like, as `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` are written): keys and values trimmed and percent-decoded;
/// empty members skipped.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for member in text.split(',') {
        if member.trim().is_empty() {
            continue;
        }
        let (k, v) = member
            .split_once('=')
            .ok_or_else(|| format!("{member:?} is not key=value"))?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s.trim())
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("{member:?} is not UTF-8 once decoded"))
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if k.is_empty() {
            return Err(format!("{member:?} has an empty key"));
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<OtelEnv, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtelEnv::read(|k| m.get(k).cloned())
    }

    #[test]
    fn nothing_set() {
        assert_eq!(env(&[]).unwrap(), OtelEnv::default());
        assert_eq!(
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
            OtelEnv::default()
        );
    }

    #[test]
    fn endpoints() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap();
        assert_eq!(
            e.traces_endpoint.as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/base/")]).unwrap();
        assert_eq!(
            e.traces_endpoint.as_deref(),
            Some("http://c:4318/base/v1/traces")
        );
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/custom"),
        ])
        .unwrap();
        assert_eq!(e.traces_endpoint.as_deref(), Some("http://t:1/custom"));
    }

    #[test]
    fn headers_are_decoded_and_traces_ones_win() {
        let e = env(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=abc%3D%3D, Authorization=Basic%20eA==,x=1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X=2"),
        ])
        .unwrap();
        assert_eq!(
            e.headers,
            vec![
                ("api-key".into(), "abc==".into()),
                ("Authorization".into(), "Basic eA==".into()),
                ("X".into(), "2".into()),
            ]
        );
        assert!(env(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).is_err());
        assert!(env(&[("OTEL_EXPORTER_OTLP_HEADERS", "=v")]).is_err());
    }

    #[test]
    fn the_logs_signal_has_its_own_variables() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]).unwrap();
        assert_eq!(e.logs.endpoint.as_deref(), Some("http://c:4318/v1/logs"));
        assert_eq!(
            e.traces_endpoint.as_deref(),
            Some("http://c:4318/v1/traces")
        );
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:1/custom/logs"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "B=3"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=9"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "100"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "200"),
        ])
        .unwrap();
        assert_eq!(
            e.logs,
            SignalEnv {
                endpoint: Some("http://l:1/custom/logs".into()),
                headers: vec![("a".into(), "1".into()), ("B".into(), "3".into())],
                compression: Some(Compression::None),
                timeout_ms: Some(200),
                tls: TlsFiles::default(),
            }
        );
        assert_eq!(
            e.timeout_ms,
            Some(100),
            "the traces side keeps the general value"
        );
        assert!(env(&[("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "br")]).is_err());
        assert!(env(&[("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "0")]).is_err());
        assert!(env(&[("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x")]).is_err());
    }

    #[test]
    fn certificate_files_per_signal_over_the_general_ones() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", " /etc/logs-ca.pem "),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/etc/c.pem"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/c.key"),
            ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", ""),
        ])
        .unwrap();
        assert_eq!(
            e.tls,
            TlsFiles {
                ca_file: Some("/etc/ca.pem".into()),
                cert_file: Some("/etc/c.pem".into()),
                key_file: Some("/etc/c.key".into()),
            }
        );
        assert_eq!(
            e.logs.tls,
            TlsFiles {
                ca_file: Some("/etc/logs-ca.pem".into()),
                cert_file: None,
                // Empty counts as unset: the general variable applies.
                key_file: Some("/etc/c.key".into()),
            }
        );
    }

    #[test]
    fn compression_timeout_service_resource() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=1.0,deployment.environment=prod%20eu",
            ),
        ])
        .unwrap();
        assert_eq!(e.compression, Some(Compression::None));
        assert_eq!(e.timeout_ms, Some(2500));
        assert_eq!(e.service_name.as_deref(), Some("checkout"));
        assert_eq!(
            e.resource_attributes,
            vec![
                ("service.version".into(), "1.0".into()),
                ("deployment.environment".into(), "prod eu".into()),
            ]
        );
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ])
        .unwrap();
        assert_eq!(e.compression, Some(Compression::Gzip));
        assert!(env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]).is_err());
        assert!(env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")]).is_err());
    }
}
