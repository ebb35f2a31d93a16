//! Logging: a `log` backend that writes logfmt or JSON lines to stderr,
//! node_exporter style (`ts=… level=… msg=… key=value`).

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Output format of log lines (`--log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Logfmt,
    Json,
}

struct Logger {
    format: Format,
    level: LevelFilter,
}

/// Installs the logger; `level` is one of debug, info, warn, error.
pub fn init(level: LevelFilter, format: Format) {
    let _ = log::set_boxed_logger(Box::new(Logger { format, level }));
    log::set_max_level(level);
}

fn level_str(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "debug",
    }
}

/// Quotes a logfmt value when it needs quoting.
fn logfmt_value(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c == ' ' || c == '"' || c == '=' || c.is_control()) {
        return v.to_string();
    }
    format!("{v:?}")
}

/// RFC 3339 UTC timestamp with milliseconds, without a date crate.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_millis())
}

/// Formats Unix seconds as RFC 3339 UTC.
pub fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ts = rfc3339_now();
        let msg = r.args().to_string();
        let line = match self.format {
            Format::Logfmt => format!(
                "ts={ts} level={} target={} msg={}\n",
                level_str(r.level()),
                r.target(),
                logfmt_value(&msg)
            ),
            Format::Json => format!(
                "{}\n",
                serde_json::json!({"ts": ts, "level": level_str(r.level()), "target": r.target(), "msg": msg})
            ),
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_615_259, 7), "2026-11-25T14:00:59.007Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        assert_eq!(logfmt_value("ok"), "ok");
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value(""), "\"\"");
    }
}
