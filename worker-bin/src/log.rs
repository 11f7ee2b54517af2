//! What the worker does, one line per event on stderr: text for people, JSON lines for log shippers.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Logger {
    pub level: Level,
    pub format: Format,
}

impl Logger {
    pub fn error(&self, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.emit(Level::Error, msg, fields);
    }
    pub fn warn(&self, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.emit(Level::Warn, msg, fields);
    }
    pub fn info(&self, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.emit(Level::Info, msg, fields);
    }
    pub fn debug(&self, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.emit(Level::Debug, msg, fields);
    }

    fn emit(&self, level: Level, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
        if level <= self.level {
            eprintln!(
                "{}",
                render(self.format, now_unix_seconds(), level, msg, fields)
            );
        }
    }
}

fn now_unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
    }
}

/// One log line. Text: `pg_trickle_worker: <level>: <msg> key=value ...`; JSON: an object with `ts`
/// (Unix seconds), `level`, `msg` and the fields as strings.
pub fn render(
    format: Format,
    ts: f64,
    level: Level,
    msg: &str,
    fields: &[(&str, &dyn std::fmt::Display)],
) -> String {
    let mut out = String::new();
    match format {
        Format::Text => {
            let _ = write!(out, "pg_trickle_worker: {}: {msg}", level_name(level));
            for (k, v) in fields {
                let v = v.to_string();
                if v.is_empty() || v.contains(char::is_whitespace) || v.contains('"') {
                    let _ = write!(out, " {k}={}", json_string(&v));
                } else {
                    let _ = write!(out, " {k}={v}");
                }
            }
        }
        Format::Json => {
            let _ = write!(
                out,
                "{{\"ts\":{ts:.3},\"level\":\"{}\",\"msg\":{}",
                level_name(level),
                json_string(msg)
            );
            for (k, v) in fields {
                let _ = write!(out, ",{}:{}", json_string(k), json_string(&v.to_string()));
            }
            out.push('}');
        }
    }
    out
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_quote_values_with_spaces() {
        let line = render(
            Format::Text,
            0.0,
            Level::Info,
            "registered",
            &[("worker_id", &"abc"), ("host", &"a b")],
        );
        assert_eq!(
            line,
            "pg_trickle_worker: info: registered worker_id=abc host=\"a b\""
        );
    }

    #[test]
    fn json_lines_are_objects_with_escaped_strings() {
        let line = render(
            Format::Json,
            1.5,
            Level::Warn,
            "lost \"x\"",
            &[("error", &"a\nb")],
        );
        assert_eq!(
            line,
            r#"{"ts":1.500,"level":"warn","msg":"lost \"x\"","error":"a\nb"}"#
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(json_string("\u{1}"), "\"\\u0001\"");
    }
}
