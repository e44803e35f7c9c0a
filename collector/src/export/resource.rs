//! The resource every exported span is attached to: who wrote it (service, pid) and where
//! (host), plus what the configuration and `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` add.

use crate::sinks::{Origin, OwnedValue};

/// Resource settings shared by the exporters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceInfo {
    /// Replaces every span's service name (`OTEL_SERVICE_NAME`, or `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`).
    pub service_name: Option<String>,
    /// `service.version`, if known.
    pub service_version: Option<String>,
    /// The host's name.
    pub host_name: String,
    /// Further attributes (configuration, `OTEL_RESOURCE_ATTRIBUTES`), in order.
    pub extra: Vec<(String, String)>,
}

impl ResourceInfo {
    /// The service name spans of `origin` are exported under.
    pub fn service<'a>(&'a self, origin: &'a Origin) -> &'a str {
        self.service_name.as_deref().unwrap_or(&origin.service)
    }

    /// The resource attributes of spans written by `origin`: `service.name`,
    /// `service.version` (when known), `host.name`, `process.pid`, then the extra ones.
    pub fn attributes(&self, origin: &Origin) -> Vec<(String, OwnedValue)> {
        let mut out = vec![(
            "service.name".to_owned(),
            OwnedValue::Str(self.service(origin).to_owned()),
        )];
        if let Some(v) = &self.service_version {
            out.push(("service.version".to_owned(), OwnedValue::Str(v.clone())));
        }
        out.push((
            "host.name".to_owned(),
            OwnedValue::Str(self.host_name.clone()),
        ));
        out.push((
            "process.pid".to_owned(),
            OwnedValue::I64(i64::from(origin.pid)),
        ));
        for (k, v) in &self.extra {
            if let Some(slot) = out.iter_mut().find(|(key, _)| key == k) {
                if k != "process.pid" {
                    slot.1 = OwnedValue::Str(v.clone());
                }
            } else {
                out.push((k.clone(), OwnedValue::Str(v.clone())));
            }
        }
        out
    }
}

/// This host's name (`gethostname(2)`), or empty if it cannot be read.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for buf.len() bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            service: "api".into(),
            pid: 42,
            tid: 7,
        }
    }

    #[test]
    fn attributes_in_order_with_overrides() {
        let r = ResourceInfo {
            service_name: None,
            service_version: Some("1.2.3".into()),
            host_name: "h".into(),
            extra: vec![
                ("deployment.environment".into(), "prod".into()),
                ("host.name".into(), "h2".into()),
                ("process.pid".into(), "1".into()),
            ],
        };
        let a = r.attributes(&origin());
        assert_eq!(
            a,
            vec![
                ("service.name".into(), OwnedValue::Str("api".into())),
                ("service.version".into(), OwnedValue::Str("1.2.3".into())),
                ("host.name".into(), OwnedValue::Str("h2".into())),
                ("process.pid".into(), OwnedValue::I64(42)),
                (
                    "deployment.environment".into(),
                    OwnedValue::Str("prod".into())
                ),
            ]
        );
        let r = ResourceInfo {
            service_name: Some("renamed".into()),
            ..r
        };
        assert_eq!(r.service(&origin()), "renamed");
    }

    #[test]
    fn host_name_is_readable() {
        assert!(!host_name().is_empty());
    }
}
