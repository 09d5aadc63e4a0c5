//! JSON log lines: one object per line, shaped for log collectors.
//!
//! ```text
//! {"ts":"2026-12-06T10:01:51.123456Z","level":"info","target":"corral::worker","message":"GET / 200","slot":0,"pid":4242,"stream":"stdout"}
//! ```
//!
//! `ts` (RFC 3339, UTC, microseconds), `level` (`trace` … `error`), `target`, `message`, then
//! the event's own fields, then those of the spans it is in (outermost first, an inner span's
//! value winning), flattened: no nesting to unpack. A field named as one of the four fixed
//! keys is kept as `field.NAME`. tracing-subscriber's own JSON layer nests the fields and the
//! spans and names the time `timestamp`; this formatter plugs into the same `fmt` layer (its
//! filtering, span store and writer) with the shape above instead.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The keys every line starts with.
const FIXED: [&str; 4] = ["ts", "level", "target", "message"];

/// The event formatter: one JSON object per line (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

/// The span field formatter [`JsonLines`] needs: a span's fields kept as a JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

/// Collects fields into a JSON object.
struct Collect<'a>(&'a mut Map<String, Value>);

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for Collect<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, i64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, u64::try_from(value).map_or_else(|_| Value::String(value.to_string()), Value::from));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Collect(&mut map));
        write!(writer, "{}", Value::Object(map))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut map = match serde_json::from_str::<Value>(&current.fields) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        fields.record(&mut Collect(&mut map));
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let meta = event.metadata();
        let mut own = Map::new();
        event.record(&mut Collect(&mut own));
        let message = own.remove("message").unwrap_or(Value::String(String::new()));
        // Span fields, outermost first, so that an inner span's value wins; the event's own
        // fields win over them all.
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(formatted) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&formatted.fields)
                {
                    fields.extend(map);
                }
            }
        }
        fields.extend(own);
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(ts));
        line.insert("level".into(), Value::String(meta.level().as_str().to_ascii_lowercase()));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        line.insert("message".into(), message);
        for (key, value) in fields {
            let key = if FIXED.contains(&key.as_str()) { format!("field.{key}") } else { key };
            line.insert(key, value);
        }
        writeln!(writer, "{}", ordered(&line))
    }
}

/// The object as one line with the fixed keys first, in their order (serde_json's map sorts
/// its keys).
fn ordered(line: &Map<String, Value>) -> String {
    let mut out = String::from("{");
    let keys = FIXED.iter().map(|k| k.to_string()).chain(line.keys().filter(|k| !FIXED.contains(&k.as_str())).cloned());
    for key in keys {
        let Some(value) = line.get(&key) else { continue };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::String(key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

/// A program's last word (why it cannot start, why it stopped) as a JSON line, without a
/// subscriber: `level` `error`, `target` the program's name.
///
/// ```
/// let line = corral::logging::json::error_line("corral", "no program to run");
/// let v: serde_json::Value = serde_json::from_str(&line).unwrap();
/// assert_eq!((v["level"].as_str(), v["message"].as_str()), (Some("error"), Some("no program to run")));
/// ```
pub fn error_line(target: &str, message: &str) -> String {
    let mut ts = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut ts));
    let mut line = Map::new();
    line.insert("ts".into(), Value::String(ts));
    line.insert("level".into(), Value::String("error".into()));
    line.insert("target".into(), Value::String(target.to_string()));
    line.insert("message".into(), Value::String(message.to_string()));
    format!("{}\n", ordered(&line))
}
