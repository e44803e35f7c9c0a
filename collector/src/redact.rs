//! PII redaction: log messages, log fields and span attributes are scrubbed in the collector,
//! before any sink or exporter sees them.
//!
//! Two kinds of rules:
//! - a **field-name deny list**: the value of a field or attribute whose name matches (case
//!   insensitively, the whole name or its last dotted segment: `password` matches `password`,
//!   `PASSWORD` and `db.password`) is replaced whatever it holds; inside JSON values, object keys
//!   are matched the same way;
//! - **patterns** (regular expressions, [`regex`] syntax) searched in every string: log messages,
//!   string field values, strings inside JSON field values, span attribute values (span, event
//!   and link attributes, hence also the status description), span and event names. Only the
//!   match is replaced; when a pattern has a capture group named `secret`, only that group is
//!   (the `bearer` rule keeps the word `Bearer`).
//!
//! Built-in patterns (`builtin`, all on by default):
//! - `email`: `local@domain.tld`;
//! - `credit_card`: 13 to 19 digits, optionally grouped by spaces or dashes, **that pass the Luhn
//!   check** (so order numbers and timestamps are left alone);
//! - `bearer`: the credentials after `Bearer` or `Basic` (HTTP `Authorization` values);
//! - `jwt`: JSON Web Tokens (`eyJ….eyJ….…`);
//! - `api_key`: well-known prefixed secrets: Stripe `sk_live_`/`sk_test_` (and `rk_`), GitHub
//!   `ghp_`/`gho_`/`ghs_`/`github_pat_`, AWS access key ids `AKIA…`, Slack `xoxb-`/`xoxp-`.
//!
//! A clean string costs one pass of a [`RegexSet`] over it (plus a name comparison per field);
//! only strings that match are rewritten.
//!
//! # Configuration
//!
//! Redaction is off unless the file has a `[redaction]` section; an empty section turns it on
//! with the defaults below.
//!
//! ```toml
//! [redaction]
//! deny_fields = ["password", "passwd", "secret", "token", "access_token", "refresh_token",
//!                "api_key", "apikey", "authorization", "cookie", "set-cookie", "credit_card",
//!                "card_number", "ssn"]
//! builtin = ["email", "credit_card", "bearer", "jwt", "api_key"]   # [] for none
//! patterns = [{ name = "ssn", regex = '\b\d{3}-\d{2}-\d{4}\b' }]  # default: none
//! replacement = "[REDACTED]"
//! ```
//!
//! Self-metric: `shmtel_redactions_total{rule}`: values replaced, by rule (`field` for the deny
//! list, else the pattern's name).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use crate::model::{FamilyProvider, FamilySnapshot, MetricKind, SeriesSnapshot, SeriesValue};
use crate::sinks::{LogData, OwnedValue, SpanData};

/// The built-in pattern names.
pub const BUILTIN: [&str; 5] = ["email", "credit_card", "bearer", "jwt", "api_key"];

/// The default field-name deny list.
pub const DEFAULT_DENY_FIELDS: [&str; 14] = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
    "credit_card",
    "card_number",
    "ssn",
];

/// The `[redaction]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Field/attribute names whose values are always replaced.
    pub deny_fields: Vec<String>,
    /// Built-in patterns to apply (default all of [`BUILTIN`]).
    pub builtin: Vec<String>,
    /// User patterns.
    pub patterns: Vec<PatternConfig>,
    /// What replaces a redacted value (default `[REDACTED]`).
    pub replacement: String,
}

/// One user pattern.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// The rule's name (the `rule` label of the self-metric).
    pub name: String,
    /// The regular expression.
    pub regex: String,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        RedactionConfig {
            deny_fields: DEFAULT_DENY_FIELDS.iter().map(|s| s.to_string()).collect(),
            builtin: BUILTIN.iter().map(|s| s.to_string()).collect(),
            patterns: Vec::new(),
            replacement: "[REDACTED]".into(),
        }
    }
}

fn builtin_regex(name: &str) -> Option<&'static str> {
    Some(match name {
        "email" => {
            r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}"
        }
        "credit_card" => r"\b(?:\d[ \-]?){12,18}\d\b",
        "bearer" => r"(?i)\b(?:bearer|basic)\s+(?P<secret>[A-Za-z0-9\-._~+/]+=*)",
        "jwt" => r"\beyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
        "api_key" => {
            r"\b(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|AKIA[0-9A-Z]{16}|xox[bpars]-[A-Za-z0-9\-]{10,})\b"
        }
        _ => return None,
    })
}

impl RedactionConfig {
    /// Check the section (compiles the patterns); errors are (key, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        Redactor::new(self).map(|_| ())
    }
}

/// Whether a digit string passes the Luhn check.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

struct Rule {
    name: String,
    regex: Regex,
    luhn: bool,
    secret_group: bool,
}

struct Counters {
    /// Index 0 is the deny list (`field`); then one per rule.
    names: Vec<String>,
    counts: Vec<AtomicU64>,
    created: f64,
}

/// Applies a [`RedactionConfig`]. Cheap to clone (the compiled rules and counters are shared).
#[derive(Clone)]
pub struct Redactor {
    inner: Arc<Inner>,
}

struct Inner {
    deny: Vec<String>,
    set: RegexSet,
    rules: Vec<Rule>,
    replacement: String,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("deny", &self.inner.deny)
            .field(
                "rules",
                &self.inner.rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Redactor {
    /// Compile `cfg`; errors are (key, message) naming the `redaction.*` key at fault.
    pub fn new(cfg: &RedactionConfig) -> Result<Redactor, (String, String)> {
        let mut rules = Vec::new();
        for (i, name) in cfg.builtin.iter().enumerate() {
            let Some(re) = builtin_regex(name) else {
                return Err((
                    format!("redaction.builtin[{i}]"),
                    format!(
                        "unknown built-in pattern {name:?}: expected one of {}",
                        BUILTIN.join(", ")
                    ),
                ));
            };
            if rules.iter().any(|r: &Rule| r.name == *name) {
                continue;
            }
            rules.push(Rule {
                name: name.clone(),
                regex: Regex::new(re).expect("built-in patterns compile"),
                luhn: name == "credit_card",
                secret_group: re.contains("(?P<secret>"),
            });
        }
        for (i, p) in cfg.patterns.iter().enumerate() {
            if p.name.is_empty() {
                return Err((
                    format!("redaction.patterns[{i}].name"),
                    "is required".into(),
                ));
            }
            if p.name == "field" || rules.iter().any(|r| r.name == p.name) {
                return Err((
                    format!("redaction.patterns[{i}].name"),
                    format!("{:?} is already the name of another rule", p.name),
                ));
            }
            let regex = Regex::new(&p.regex).map_err(|e| {
                (
                    format!("redaction.patterns[{i}].regex"),
                    format!("invalid regular expression: {e}"),
                )
            })?;
            if regex.is_match("") {
                return Err((
                    format!("redaction.patterns[{i}].regex"),
                    "matches the empty string (it would redact everything)".into(),
                ));
            }
            let secret_group = regex.capture_names().any(|n| n == Some("secret"));
            rules.push(Rule {
                name: p.name.clone(),
                regex,
                luhn: false,
                secret_group,
            });
        }
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str()))
            .map_err(|e| ("redaction.patterns".to_owned(), e.to_string()))?;
        let mut names = vec!["field".to_owned()];
        names.extend(rules.iter().map(|r| r.name.clone()));
        let counts = names.iter().map(|_| AtomicU64::new(0)).collect();
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Ok(Redactor {
            inner: Arc::new(Inner {
                deny: cfg.deny_fields.iter().map(|s| s.to_lowercase()).collect(),
                set,
                rules,
                replacement: cfg.replacement.clone(),
                counters: Arc::new(Counters {
                    names,
                    counts,
                    created,
                }),
            }),
        })
    }

    fn count(&self, rule: usize, n: u64) {
        // Ordering: Relaxed: an independent statistic.
        self.inner.counters.counts[rule].fetch_add(n, Ordering::Relaxed);
    }

    /// Whether values of the field `name` are always replaced.
    pub fn denied(&self, name: &str) -> bool {
        let last = name.rsplit('.').next().unwrap_or(name);
        self.inner
            .deny
            .iter()
            .any(|d| d.eq_ignore_ascii_case(name) || d.eq_ignore_ascii_case(last))
    }

    /// Apply the patterns to `s`; returns whether it changed.
    pub fn redact_str(&self, s: &mut String) -> bool {
        if self.inner.rules.is_empty() || s.is_empty() {
            return false;
        }
        let hits = self.inner.set.matches(s);
        if !hits.matched_any() {
            return false;
        }
        let mut changed = false;
        for i in hits.iter() {
            let rule = &self.inner.rules[i];
            let mut n = 0u64;
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for caps in rule.regex.captures_iter(s) {
                let whole = caps.get(0).expect("group 0");
                let target = if rule.secret_group {
                    caps.name("secret").unwrap_or(whole)
                } else {
                    whole
                };
                if rule.luhn {
                    let digits: Vec<u8> =
                        target.as_str().bytes().filter(u8::is_ascii_digit).collect();
                    if !(13..=19).contains(&digits.len()) || !luhn(&digits) {
                        continue;
                    }
                }
                out.push_str(&s[last..target.start()]);
                out.push_str(&self.inner.replacement);
                last = target.end();
                n += 1;
            }
            if n > 0 {
                out.push_str(&s[last..]);
                *s = out;
                changed = true;
                self.count(i + 1, n);
            }
        }
        changed
    }

    /// Redact one field value; `name` is the field's name.
    pub fn redact_value(&self, name: &str, v: &mut OwnedValue) {
        if self.denied(name) {
            if !matches!(v, OwnedValue::Null) {
                *v = OwnedValue::Str(self.inner.replacement.clone());
                self.count(0, 1);
            }
            return;
        }
        match v {
            OwnedValue::Str(s) => {
                self.redact_str(s);
            }
            OwnedValue::Json(text) => self.redact_json_text(text),
            _ => {}
        }
    }

    fn redact_json_text(&self, text: &mut String) {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
            // Not JSON after all: redact it as text.
            self.redact_str(text);
            return;
        };
        if self.redact_json(&mut value) {
            *text = value.to_string();
        }
    }

    /// Redact strings inside a JSON value and values under denied keys; returns whether it
    /// changed.
    pub fn redact_json(&self, v: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match v {
            Value::String(s) => self.redact_str(s),
            Value::Array(a) => a.iter_mut().fold(false, |c, x| self.redact_json(x) | c),
            Value::Object(m) => {
                let mut changed = false;
                for (k, x) in m.iter_mut() {
                    if self.denied(k) {
                        if !x.is_null() {
                            *x = Value::String(self.inner.replacement.clone());
                            self.count(0, 1);
                            changed = true;
                        }
                    } else {
                        changed |= self.redact_json(x);
                    }
                }
                changed
            }
            _ => false,
        }
    }

    /// Apply the patterns to a shared name (a span or event name); replaced only when changed.
    fn redact_name(&self, name: &mut Arc<str>) {
        if self.inner.rules.is_empty() || name.is_empty() || !self.inner.set.is_match(name) {
            return;
        }
        let mut s = String::from(&**name);
        if self.redact_str(&mut s) {
            *name = s.into();
        }
    }

    fn redact_attrs(&self, attrs: &mut [(Arc<str>, OwnedValue)]) {
        for (k, v) in attrs {
            self.redact_value(k, v);
        }
    }

    /// Redact a log event: its message and fields.
    pub fn redact_log(&self, log: &mut LogData) {
        self.redact_str(&mut log.message);
        self.redact_attrs(&mut log.fields);
    }

    /// Redact a span: its name, attributes (the status description among them), events (names
    /// and attributes) and link attributes.
    pub fn redact_span(&self, span: &mut SpanData) {
        self.redact_name(&mut span.name);
        self.redact_attrs(&mut span.attributes);
        for e in &mut span.events {
            self.redact_name(&mut e.name);
            self.redact_attrs(&mut e.attributes);
        }
        for l in &mut span.links {
            self.redact_attrs(&mut l.attributes);
        }
    }

    /// The self-metric provider (`shmtel_redactions_total{rule}`).
    pub fn provider(&self) -> Arc<dyn FamilyProvider> {
        Arc::new(RedactionMetrics(self.inner.counters.clone()))
    }
}

struct RedactionMetrics(Arc<Counters>);

impl FamilyProvider for RedactionMetrics {
    fn families(&self) -> Vec<FamilySnapshot> {
        let c = &self.0;
        vec![FamilySnapshot {
            name: "shmtel_redactions_total".into(),
            help: "Values redacted before export, by rule (field: the field-name deny list)."
                .into(),
            unit: String::new(),
            kind: MetricKind::Counter,
            series: c
                .names
                .iter()
                .zip(&c.counts)
                .map(|(name, n)| SeriesSnapshot {
                    labels: vec![("rule".into(), name.clone())],
                    value: SeriesValue::Counter {
                        // Ordering: Relaxed: an independent statistic.
                        total: n.load(Ordering::Relaxed) as f64,
                        exemplar: None,
                    },
                    created_unix_secs: Some(c.created),
                })
                .collect(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{EventData, LinkData, Origin};

    fn redactor() -> Redactor {
        Redactor::new(&RedactionConfig::default()).unwrap()
    }

    fn red(s: &str) -> String {
        let mut s = s.to_owned();
        redactor().redact_str(&mut s);
        s
    }

    fn count(r: &Redactor, rule: &str) -> f64 {
        let f = &r.provider().families()[0];
        f.series
            .iter()
            .find(|s| s.labels[0].1 == rule)
            .map(|s| match s.value {
                SeriesValue::Counter { total, .. } => total,
                _ => unreachable!(),
            })
            .unwrap()
    }

    #[test]
    fn luhn_check() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"5500000000000004"));
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"1234567890123456"));
    }

    #[test]
    fn builtin_patterns() {
        assert_eq!(
            red("user alice@example.com signed in"),
            "user [REDACTED] signed in"
        );
        assert_eq!(red("card 4111 1111 1111 1111 ok"), "card [REDACTED] ok");
        assert_eq!(red("card 5500-0000-0000-0004"), "card [REDACTED]");
        assert_eq!(red("4111111111111111"), "[REDACTED]");
        // Not Luhn-valid: an order id, kept.
        assert_eq!(red("order 1234567890123456"), "order 1234567890123456");
        // Too short to be a card.
        assert_eq!(red("id 411111111111"), "id 411111111111");
        assert_eq!(
            red("Authorization: Bearer abc.def.ghi"),
            "Authorization: Bearer [REDACTED]"
        );
        assert_eq!(red("basic dXNlcjpwYXNz"), "basic [REDACTED]");
        assert_eq!(
            red("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig here"),
            "jwt [REDACTED] here"
        );
        assert_eq!(
            red("token sk_live_abcdefghijklmnop1234 used"),
            "token [REDACTED] used"
        );
        assert_eq!(red("key AKIAIOSFODNN7EXAMPLE"), "key [REDACTED]");
        assert_eq!(
            red("ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            "[REDACTED]"
        );
        assert_eq!(red("xoxb-1234567890-abcdef"), "[REDACTED]");
        let clean = "GET /users/42 took 12ms at 2026-11-24T17:31:05Z";
        assert_eq!(red(clean), clean);
    }

    #[test]
    fn deny_list_matches_names_and_last_segments() {
        let r = redactor();
        assert!(r.denied("password"));
        assert!(r.denied("PASSWORD"));
        assert!(r.denied("db.password"));
        assert!(r.denied("http.request.header.authorization"));
        assert!(r.denied("Set-Cookie"));
        assert!(!r.denied("password_hint_shown"));
        assert!(!r.denied("user"));
        let mut v = OwnedValue::I64(1234);
        r.redact_value("ssn", &mut v);
        assert_eq!(v, OwnedValue::Str("[REDACTED]".into()));
        let mut v = OwnedValue::Str("a@b.io".into());
        r.redact_value("contact", &mut v);
        assert_eq!(v, OwnedValue::Str("[REDACTED]".into()));
        assert_eq!(count(&r, "field"), 1.0);
        assert_eq!(count(&r, "email"), 1.0);
    }

    #[test]
    fn json_values() {
        let r = redactor();
        let mut v = OwnedValue::Json(
            r#"{"user":{"email":"a@b.io","password":"x","n":[1,"4111111111111111"]},"ok":"fine"}"#
                .into(),
        );
        r.redact_value("payload", &mut v);
        let OwnedValue::Json(text) = v else { panic!() };
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"user":{"email":"[REDACTED]","password":"[REDACTED]",
                "n":[1,"[REDACTED]"]},"ok":"fine"})
        );
        let mut bad = OwnedValue::Json("not json a@b.io".into());
        r.redact_value("x", &mut bad);
        assert_eq!(bad, OwnedValue::Json("not json [REDACTED]".into()));
        let clean = r#"{"a":1}"#;
        let mut v = OwnedValue::Json(clean.into());
        r.redact_value("x", &mut v);
        assert_eq!(v, OwnedValue::Json(clean.into()), "untouched when clean");
    }

    #[test]
    fn logs_and_spans() {
        let r = redactor();
        let mut log = LogData {
            origin: Origin {
                service: "s".into(),
                pid: 1,
                tid: 1,
            },
            time_ns: 0,
            observed_ns: 0,
            level: 2,
            message: "mail bob@example.org".into(),
            truncated: false,
            correlation_id: String::new(),
            trace_id: [0; 16],
            span_id: [0; 8],
            caller: "".into(),
            fields: vec![
                ("password".into(), OwnedValue::Str("hunter2".into())),
                ("n".into(), OwnedValue::I64(4)),
            ],
        };
        r.redact_log(&mut log);
        assert_eq!(log.message, "mail [REDACTED]");
        assert_eq!(log.fields[0].1, OwnedValue::Str("[REDACTED]".into()));
        assert_eq!(log.fields[1].1, OwnedValue::I64(4));

        let mut span = crate::traces::testutil::span(1, 1, 0, 0, 1);
        span.name = "notify a@b.io".into();
        span.attributes = vec![
            ("token".into(), OwnedValue::Str("t".into())),
            (
                "otel.status_description".into(),
                OwnedValue::Str("failed for a@b.io".into()),
            ),
        ];
        span.events = vec![EventData {
            name: "ev".into(),
            time_ns: 0,
            attributes: vec![("msg".into(), OwnedValue::Str("c@d.io".into()))],
        }];
        span.links = vec![LinkData {
            trace_id: [1; 16],
            span_id: [1; 8],
            flags: 0,
            attributes: vec![("cookie".into(), OwnedValue::Str("s=1".into()))],
        }];
        r.redact_span(&mut span);
        let text = format!("{span:?}");
        assert!(!text.contains("@"), "{text}");
        assert!(!text.contains("s=1"), "{text}");
    }

    #[test]
    fn config_parsing_and_errors() {
        let cfg: RedactionConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, RedactionConfig::default());
        let cfg: RedactionConfig = toml::from_str(
            "builtin = []\ndeny_fields = []\nreplacement = \"***\"\n\
             patterns = [{ name = \"ssn\", regex = '\\b\\d{3}-\\d{2}-\\d{4}\\b' }]",
        )
        .unwrap();
        let r = Redactor::new(&cfg).unwrap();
        let mut s = "ssn 123-45-6789, mail a@b.io".to_owned();
        r.redact_str(&mut s);
        assert_eq!(s, "ssn ***, mail a@b.io");
        assert!(!r.denied("password"));

        let err = |text: &str| {
            let cfg: RedactionConfig = toml::from_str(text).unwrap();
            cfg.validate().unwrap_err()
        };
        assert_eq!(
            err("patterns = [{ name = \"x\", regex = \"(\" }]").0,
            "redaction.patterns[0].regex"
        );
        assert_eq!(
            err("patterns = [{ name = \"x\", regex = \"a*\" }]").0,
            "redaction.patterns[0].regex"
        );
        assert_eq!(
            err("patterns = [{ name = \"email\", regex = \"a\" }]").0,
            "redaction.patterns[0].name"
        );
        let e = err("builtin = [\"email\", \"phone\"]");
        assert_eq!(e.0, "redaction.builtin[1]");
        assert!(e.1.contains("credit_card"), "{}", e.1);
        assert!(toml::from_str::<RedactionConfig>("bogus = 1").is_err());
        assert!(toml::from_str::<RedactionConfig>("patterns = [{ name = \"a\" }]").is_err());
    }

    #[test]
    fn secret_group_in_user_patterns() {
        let cfg = RedactionConfig {
            builtin: vec![],
            patterns: vec![PatternConfig {
                name: "pin".into(),
                regex: r"pin=(?P<secret>\d+)".into(),
            }],
            ..RedactionConfig::default()
        };
        let r = Redactor::new(&cfg).unwrap();
        let mut s = "pin=1234 and pin=99".to_owned();
        assert!(r.redact_str(&mut s));
        assert_eq!(s, "pin=[REDACTED] and pin=[REDACTED]");
        assert_eq!(count(&r, "pin"), 2.0);
    }
}
