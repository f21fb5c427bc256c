//! The process's log: one subscriber, set up once at start, writing text (every value escaped)
//! or JSON lines to stderr, switched to the configured `[log] format` once the config is read.
//!
//! # Security
//! Request-derived values (a username, a header, a path) reach the log through tracing fields.
//! In text format every field value and message is escaped here, once, by [`EscapedFields`]:
//! no control character (newline, carriage return, escape), no line or paragraph separator
//! and no bidirectional override is written raw, so a value cannot end a line and forge the
//! next one, nor repaint a terminal. In JSON format serde_json escapes control characters in
//! every string, and one event is one line.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::Layer;

pub use crate::config::LogFormat;

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;
type Handle = tracing_subscriber::reload::Handle<BoxedLayer, Registry>;

static HANDLE: OnceLock<Handle> = OnceLock::new();

/// Installs the global subscriber: stderr, text format with escaped values, filtered by
/// `PORTCULLIS_LOG` (default: info, Pingora's own crates at warn), Pingora's trace events
/// always dropped. Call once, first thing; a second call does nothing.
///
/// # Security
/// At trace level Pingora prints whole request heads (cookies, query strings carrying link
/// tokens), so its trace events are dropped even when `PORTCULLIS_LOG=trace` or
/// `pingora_proxy=trace` asks for them: no setting puts a session cookie in the log.
pub fn init() {
    use tracing_subscriber::prelude::*;
    if HANDLE.get().is_some() {
        return;
    }
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,pingora=warn,pingora_core=warn,pingora_proxy=warn",
            )
        });
    let no_pingora_trace = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("pingora") && *meta.level() == tracing::Level::TRACE)
    });
    let (format, handle) = tracing_subscriber::reload::Layer::new(layer(LogFormat::Text));
    let installed = tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .with(no_pingora_trace)
        .try_init();
    if installed.is_ok() {
        let _ = HANDLE.set(handle);
    }
}

/// Switches the log to `format` (the config's `[log] format`). Does nothing when [`init`] did
/// not install the subscriber (as in the library's tests).
pub fn set_format(format: LogFormat) {
    if let Some(handle) = HANDLE.get() {
        if let Err(e) = handle.reload(layer(format)) {
            tracing::warn!(error = %e, "the log format could not be switched");
        }
    }
}

/// The stderr layer of `format`.
fn layer(format: LogFormat) -> BoxedLayer {
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => Box::new(
            base.with_ansi(std::io::stderr().is_terminal())
                .fmt_fields(EscapedFields),
        ),
        LogFormat::Json => Box::new(
            base.json()
                .with_ansi(false)
                .with_current_span(true)
                .with_span_list(false)
                .flatten_event(true),
        ),
    }
}

/// The text format's field formatter: `message name=value ...` with every value escaped by
/// [`escape_into`]. As tracing's default formatter: `&str` fields quoted (`user="alice"`),
/// `%value` fields through `Display`, `?value` through `Debug`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut v = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let mut out = String::with_capacity(value.len() + field.name().len() + 2);
        if !self.first {
            out.push(' ');
        }
        self.first = false;
        let name = field.name();
        if name != "message" {
            // `r#type` fields are named with the raw prefix.
            out.push_str(name.strip_prefix("r#").unwrap_or(name));
            out.push('=');
        }
        escape_into(&mut out, value);
        self.result = self.writer.write_str(&out);
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Quoted, as tracing's own formatter writes `&str` fields (`user="alice"`), so a
        // value cannot pose as another field either.
        self.write(field, &format!("{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.write(field, &s);
    }
}

/// Appends `value` to `out` with every character that could end or hide a log line escaped:
/// control characters (C0, DEL, C1, so newline, carriage return and the terminal's escape),
/// the line and paragraph separators U+2028/U+2029, the bidirectional controls
/// (U+061C, U+200E/F, U+202A..U+202E, U+2066..U+2069) and the byte order mark. `\n`, `\r`
/// and `\t` become those two-character escapes; the others `\u{..}`.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// `value` escaped as [`escape_into`] does.
pub fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(&mut out, value);
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_character_that_breaks_or_hides_a_line() {
        let cases = [
            ("a\nb", "a\\nb"),
            ("a\r\nINFO forged", "a\\r\\nINFO forged"),
            ("\u{1b}[2K\u{1b}[1Aadmin", "\\u{1b}[2K\\u{1b}[1Aadmin"),
            ("x\u{2028}y\u{2029}z", "x\\u{2028}y\\u{2029}z"),
            ("\u{85}next", "\\u{85}next"),
            ("rtl\u{202e}gnp.exe", "rtl\\u{202e}gnp.exe"),
            ("nul\0", "nul\\u{0}"),
            ("tab\there", "tab\\there"),
            ("plain ünïcode ✓", "plain ünïcode ✓"),
        ];
        for (raw, want) in cases {
            let got = escaped(raw);
            assert_eq!(got, want, "{raw:?}");
            assert!(!got.chars().any(needs_escape), "{raw:?} -> {got:?}");
        }
    }

    #[test]
    fn the_text_formatter_escapes_messages_and_every_kind_of_field() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .finish();
        let evil = "x\nINFO portcullis: sign-in succeeded user=admin\u{2028}\u{1b}[31m";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", path = %evil);
            let _g = span.enter();
            tracing::info!(user = %evil, debug = ?evil, quoted = evil, n = 3, "hello {evil}");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(
            !out.trim_end_matches('\n').chars().any(needs_escape),
            "{out:?}"
        );
        assert!(out.contains("user=x\\nINFO portcullis"), "{out}");
        assert!(out.contains("n=3"), "{out}");
        assert!(out.contains("quoted=\"x\\nINFO"), "{out}");
        assert!(out.contains("hello x\\n"), "{out}");
        assert!(out.contains("path=x\\nINFO"), "{out}");
    }
}
