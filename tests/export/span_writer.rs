//! Writes three spans into the region directory DIR (its one argument) and prints what it wrote
//! as a `WRITER {json}` line: a server span continuing a remote parent (every attribute type, an
//! event, an error with a description), its client child (status ok), and an internal root of a
//! new trace.

#[path = "fixture.rs"]
mod fixture;

use std::time::Duration;

use fixture::{hex, now_ns, LINKED_SPAN, LINKED_TRACE, REMOTE_PARENT, REMOTE_TRACE, SERVICE};
use serde_json::json;
use shmtel_core::{Span, SpanContext, SpanKind, SpanStatus, Symbol, Value};

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: span_writer DIR");
        std::process::exit(2);
    };
    shmtel_core::init(shmtel_core::Config {
        dir: Some(dir.into()),
        service: SERVICE.into(),
        ring_bytes: 1 << 20,
        ..shmtel_core::Config::default()
    })
    .expect("init the writer");
    let sym = Symbol::intern;
    let t0 = now_ns();
    let remote = SpanContext {
        trace_id: REMOTE_TRACE,
        span_id: REMOTE_PARENT,
        sampled: true,
    };
    let mut server = Span::start_with_parent(sym("GET /items/{id}"), Some(remote), true);
    server.set_kind(SpanKind::Server);
    server.set_attribute(sym("http.route"), Value::Str("/items/{id}"));
    server.set_attribute(sym("http.response.status_code"), Value::I64(504));
    server.set_attribute(sym("sample.ratio"), Value::F64(0.25));
    server.set_attribute(sym("cache.hit"), Value::Bool(false));
    server.set_attribute(sym("tags"), Value::Json(r#"["a","b",3]"#));
    server.set_attribute(sym("limits"), Value::Json(r#"{"max":10,"soft":true}"#));
    server.set_attribute(
        sym("otel.status_description"),
        Value::Str("upstream timeout"),
    );
    server.add_link(
        SpanContext {
            trace_id: LINKED_TRACE,
            span_id: LINKED_SPAN,
            sampled: true,
        },
        true,
        &[(sym("messaging.message.id"), Value::Str("m-42"))],
    );
    server.add_event(
        sym("cache.miss"),
        &[
            (sym("cache.key"), Value::Str("item:7")),
            (sym("attempt"), Value::I64(2)),
        ],
    );
    let mut client = Span::start_with_parent(sym("SELECT items"), Some(server.context()), false);
    client.set_kind(SpanKind::Client);
    client.set_attribute(sym("db.system"), Value::Str("postgresql"));
    client.set_status(SpanStatus::Ok);
    std::thread::sleep(Duration::from_millis(3));
    let client_ctx = client.context();
    client.end();
    server.set_status(SpanStatus::Error);
    std::thread::sleep(Duration::from_millis(2));
    let server_ctx = server.context();
    server.end();
    let root = Span::start_root(sym("housekeeping"), 1.0);
    let root_ctx = root.context();
    root.end();
    let t1 = now_ns();
    println!(
        "WRITER {}",
        json!({
            "pid": std::process::id(),
            "t0": t0, "t1": t1,
            "server": {"trace": hex(&server_ctx.trace_id), "span": hex(&server_ctx.span_id)},
            "client": {"trace": hex(&client_ctx.trace_id), "span": hex(&client_ctx.span_id)},
            "root": {"trace": hex(&root_ctx.trace_id), "span": hex(&root_ctx.span_id)},
        })
    );
}
