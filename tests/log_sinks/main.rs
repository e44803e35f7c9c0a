//! End-to-end tests of the log sinks (files with rotation, syslog, OTLP logs).
