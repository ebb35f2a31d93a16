//! Configuration: the YAML file (`--config.file`), its defaults, and errors
//! that name the file, line, column and field — all of them at once.
//!
//! Every leaf is a [`V`], which records its own parse error and lets parsing
//! go on, so one run reports every bad value; unknown keys are found with
//! `serde_ignored` and located in the text. No file means all defaults.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

thread_local! {
    static ERRORS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// A configuration leaf: a value of `T`, or (when it fails to parse) the
/// default with the error recorded for [`load_str`] to report.
#[derive(Debug, Clone, PartialEq)]
pub struct V<T>(pub T);

impl<T> std::ops::Deref for V<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Default> Default for V<T> {
    fn default() -> Self {
        V(T::default())
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for V<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match T::deserialize(d) {
            Ok(v) => Ok(V(v)),
            Err(e) => {
                ERRORS.with(|errs| errs.borrow_mut().push(e.to_string()));
                Ok(V(T::default()))
            }
        }
    }
}

/// A duration written as Prometheus writes them: `10ms`, `1.5s`, `1m30s`, `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a visitor, so the deserializer attaches the error's location.
        struct Vis;
        impl serde::de::Visitor<'_> for Vis {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 10ms, 1.5s or 1m30s")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(Vis)
    }
}

/// Parses `10ms`, `250us`, `1.5s`, `1m30s`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 10ms, 1.5s, 1m30s)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Which source of domain data an exporter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// libxenstat and xenstore of the Xen host this runs on (dom0).
    Xen,
    /// The modelled cluster (one simulated host).
    #[default]
    Sim,
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub exporter: ExporterConfig,
    pub warnings: WarningsConfig,
    pub webhook: WebhookConfig,
}

/// `exporter:` — how the exporter collects.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ExporterConfig {
    /// `xen` or `sim`; `--source` wins over it.
    pub source: V<Option<SourceKind>>,
    /// A source that takes longer than this is cut off and marked down.
    pub source_timeout: V<Dur>,
    /// Path of libxenstat; default: the soname Debian ships.
    pub libxenstat: V<Option<PathBuf>>,
    /// Read names, UUIDs, targets and guest data from xenstore (xen source only).
    pub xenstore: V<bool>,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            source: V(None),
            source_timeout: V(Dur(Duration::from_secs(5))),
            libxenstat: V(None),
            xenstore: V(true),
        }
    }
}

/// `warnings:` — where the warning-failure signals come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WarningsConfig {
    /// A file whose existence means: this host is in maintenance.
    pub maintenance_file: V<PathBuf>,
    /// A xenstore key whose value `1` means maintenance (set by an operator from dom0).
    pub maintenance_xenstore_key: V<String>,
    /// Command printing NUT `upsc` output (`ups.status: OB …` means on battery).
    pub ups_command: V<Vec<String>>,
    /// Or a file holding `upsc` output or a bare status such as `OB DISCHRG`.
    pub ups_status_file: V<Option<PathBuf>>,
    /// EDAC memory-controller directory.
    pub edac_dir: V<PathBuf>,
    /// Corrected errors above this count raise `hardware_errors` (uncorrected: any).
    pub corrected_errors_threshold: V<u64>,
    /// A sensor above this many degrees Celsius raises `temperature`.
    pub temperature_celsius: V<f64>,
    /// Files whose existence means the host is shutting down.
    pub shutdown_files: V<Vec<PathBuf>>,
}

impl Default for WarningsConfig {
    fn default() -> Self {
        WarningsConfig {
            maintenance_file: V(PathBuf::from("/run/xentinel/maintenance")),
            maintenance_xenstore_key: V("/xentinel/maintenance".into()),
            ups_command: V(vec![]),
            ups_status_file: V(None),
            edac_dir: V(PathBuf::from("/sys/devices/system/edac/mc")),
            corrected_errors_threshold: V(100),
            temperature_celsius: V(90.0),
            shutdown_files: V(vec![
                PathBuf::from("/run/systemd/shutdown/scheduled"),
                PathBuf::from("/run/xentinel/shutdown"),
            ]),
        }
    }
}

/// `webhook:` — the migration webhook and `xentinel evacuate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Known hosts; when empty, the inventory's hosts (Prometheus, the exporters or the sim)
    /// are the known ones.
    pub hosts: V<Vec<String>>,
    /// Plan from these exporters' /metrics instead of Prometheus (`--exporter` wins over it).
    pub exporters: V<Vec<ExporterEntry>>,
    /// Free memory every target keeps after the planned placements.
    pub headroom_bytes: V<u64>,
    /// Migrations at once out of one host.
    pub max_parallel_per_source: V<u32>,
    /// Migrations at once into one host.
    pub max_parallel_per_target: V<u32>,
    /// Scrape job of the exporters (for `up{job=...}`).
    pub prometheus_job: V<String>,
    /// Timeout of one Prometheus query (or one exporter scrape with `exporters`).
    pub prometheus_timeout: V<Dur>,
    /// Longest wait between retries while Prometheus is unreachable.
    pub retry_max_backoff: V<Dur>,
    /// Largest accepted request body.
    pub body_limit_bytes: V<u64>,
    pub executor: ExecutorConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            hosts: V(vec![]),
            exporters: V(vec![]),
            headroom_bytes: V(512 << 20),
            max_parallel_per_source: V(2),
            max_parallel_per_target: V(1),
            prometheus_job: V("xentinel".into()),
            prometheus_timeout: V(Dur(Duration::from_secs(5))),
            retry_max_backoff: V(Dur(Duration::from_secs(30))),
            body_limit_bytes: V(1 << 20),
            executor: ExecutorConfig::default(),
        }
    }
}

/// One item of `webhook.exporters`: a host name and its exporter's metrics URL.
/// Leaves are [`V`]s too (a struct failing inside a sequence would leave the YAML
/// deserializer mid-sequence); a missing one is empty and refused when used.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ExporterEntry {
    pub host: V<String>,
    /// `http://addr:port/metrics`.
    pub url: V<String>,
}

/// `webhook.executor:` — the command that migrates a domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ExecutorConfig {
    /// argv template; `{domain}`, `{source}`, `{target}` are replaced inside each element.
    pub command: V<Vec<String>>,
    /// argv template answering "is `{domain}` on `{host}`?" by its exit status (0 = yes).
    pub locate_command: V<Vec<String>>,
    /// A migration running longer is killed and its step fails.
    pub timeout: V<Dur>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            command: V(crate::migration::executor::DEFAULT_COMMAND
                .map(String::from)
                .to_vec()),
            locate_command: V(crate::migration::executor::DEFAULT_LOCATE
                .map(String::from)
                .to_vec()),
            timeout: V(Dur(Duration::from_secs(600))),
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

/// Every problem found in one file, reported together.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in configuration:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads a file; `None` gives the defaults.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_yaml(path)
}

/// Loads any YAML file whose leaves are [`V`]s; `None` gives `T::default()`.
pub fn load_yaml<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigErrors> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            field: "-".into(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse_yaml(&text, &name)
}

/// Parses configuration text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    parse_yaml(text, file)
}

/// Parses YAML text into `T`, collecting every error; `file` names it in errors.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    file: &str,
) -> Result<T, ConfigErrors> {
    ERRORS.with(|e| e.borrow_mut().clear());
    let mut unknown = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let parsed: Result<T, _> =
        serde_ignored::deserialize(de, |p| unknown.push(p.to_string().replace(".?", "")));
    let mut errors: Vec<ConfigError> = ERRORS
        .with(|e| std::mem::take(&mut *e.borrow_mut()))
        .iter()
        .map(|m| from_yaml_message(m, file))
        .collect();
    match parsed {
        Ok(cfg) => {
            for path in unknown {
                let (line, column) = locate_key(text, &path);
                errors.push(ConfigError {
                    file: file.into(),
                    line,
                    column,
                    field: path,
                    message: "unknown field".into(),
                });
            }
            if errors.is_empty() {
                return Ok(cfg);
            }
        }
        Err(e) => {
            // An empty document is all defaults.
            if text.trim().is_empty() {
                return Ok(T::default());
            }
            // A syntax error makes every other finding unreliable: report it alone.
            if let Err(syntax) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
                errors.clear();
                errors.push(from_yaml_message(&syntax.to_string(), file));
            } else {
                errors.push(from_yaml_message(&e.to_string(), file));
            }
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    Err(ConfigErrors(errors))
}

/// Splits serde_yaml_ng's `path: message at line L column C` into parts.
fn from_yaml_message(m: &str, file: &str) -> ConfigError {
    let (body, line, column) = match m.rfind(" at line ") {
        Some(i) => {
            let loc = &m[i + " at line ".len()..];
            let mut it = loc.split(" column ");
            let line = it.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
            let column = it.next().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
            (&m[..i], line, column)
        }
        None => (m, 0, 0),
    };
    let (field, message) = match body.split_once(": ") {
        Some((f, msg)) if !f.contains(' ') => (f.to_string(), msg.to_string()),
        _ => ("-".to_string(), body.to_string()),
    };
    ConfigError {
        file: file.into(),
        line,
        column,
        field,
        message,
    }
}

/// Finds the line and column of a dotted key path in block-style YAML.
fn locate_key(text: &str, path: &str) -> (usize, usize) {
    let want: Vec<&str> = path
        .split('.')
        .filter(|s| s.parse::<usize>().is_err() && *s != "?")
        .collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("");
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = line.len() - trimmed.len();
        let mut item = trimmed;
        while let Some(rest) = item.strip_prefix("- ") {
            indent += 2;
            item = rest.trim_start();
        }
        let Some((key, _)) = item.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        if stack.len() == want.len() && stack.iter().zip(&want).all(|((_, k), w)| k == w) {
            return (i + 1, indent + 1);
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn empty_and_missing_files_are_defaults() {
        let c = load_str("", "x.yml").unwrap();
        assert_eq!(*c.exporter.source_timeout, Dur(Duration::from_secs(5)));
        assert!(load(None).is_ok());
    }

    #[test]
    fn every_error_is_reported_at_once_with_file_line_column_and_field() {
        let text = "\
exporter:
  source: xenn
  source_timeout: 5 parsecs
  xenstore: true
warnings:
  temperature_celsius: hot
  tempreature: 80
bogus: 1
";
        let errs = load_str(text, "/etc/xentinel.yml").unwrap_err().0;
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.line, e.column, e.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, 11, "exporter.source"),
                (3, 19, "exporter.source_timeout"),
                (6, 24, "warnings.temperature_celsius"),
                (7, 3, "warnings.tempreature"),
                (8, 1, "bogus"),
            ],
            "{errs:#?}"
        );
        assert!(
            errs[0]
                .to_string()
                .starts_with("/etc/xentinel.yml:2:11: exporter.source: unknown variant `xenn`")
        );
        assert!(errs[1].message.contains("invalid duration"));
        assert_eq!(errs[3].message, "unknown field");
    }

    #[test]
    fn webhook_section_reports_located_errors() {
        let text = "webhook:\n  headroom_bytes: lots\n  executor:\n    timeout: forever\n    comand: [x]\n";
        let errs = load_str(text, "w.yml").unwrap_err().0;
        let got: Vec<_> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "webhook.headroom_bytes"),
                (4, "webhook.executor.timeout"),
                (5, "webhook.executor.comand"),
            ],
            "{errs:#?}"
        );
        let ok = load_str("webhook:\n  executor:\n    command: [sh, -c, x]\n", "w").unwrap();
        assert_eq!(ok.webhook.executor.command.0, ["sh", "-c", "x"]);
        let text = "webhook:\n  exporters:\n    - host: a\n      url: http://a:1/metrics\n    - host: c\n      uri: x\n";
        let errs = load_str(text, "w.yml").unwrap_err().0;
        assert_eq!(
            errs.iter()
                .map(|e| (e.line, e.field.as_str()))
                .collect::<Vec<_>>(),
            [(6, "webhook.exporters.1.uri")],
            "{errs:#?}"
        );
        let text =
            "webhook:\n  exporters:\n    - host: a\n      url: http://a:1/metrics\n    - host: b\n";
        let ok = load_str(text, "w.yml").unwrap();
        let got: Vec<(&str, &str)> = ok
            .webhook
            .exporters
            .iter()
            .map(|e| (e.host.as_str(), e.url.as_str()))
            .collect();
        assert_eq!(got, [("a", "http://a:1/metrics"), ("b", "")]);
        assert_eq!(*ok.webhook.headroom_bytes, 512 << 20);
    }

    #[test]
    fn syntax_errors_are_located() {
        let errs = load_str("exporter:\n  source: [xen\n", "c.yml")
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].line >= 2, "{:?}", errs[0]);
    }

    #[test]
    fn good_values_are_taken() {
        let c = load_str("exporter:\n  source: xen\n  source_timeout: 2s\nwarnings:\n  temperature_celsius: 75.5\n", "c").unwrap();
        assert_eq!(*c.exporter.source, Some(SourceKind::Xen));
        assert_eq!(c.exporter.source_timeout.0, Dur(Duration::from_secs(2)));
        assert_eq!(*c.warnings.temperature_celsius, 75.5);
    }
}
