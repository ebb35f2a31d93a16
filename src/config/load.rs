//! Loading: reads a file, parses it leniently (every bad value and unknown
//! key found in one run, see [`super::leaf`]), runs the checks of what
//! parsed, and locates each problem (file, line, column, field).

use std::path::Path;

use serde::de::DeserializeOwned;

use super::errors::{ConfigError, ConfigErrors};
use super::leaf;
use super::sections::{Config, PeerConfig};
use super::values::ProbeTarget;

/// Loads a file; `None` gives the defaults.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_yaml(path)
}

/// Loads any YAML file whose leaves are [`super::V`]s; `None` gives `T::default()`.
pub fn load_yaml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigErrors> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let name = path.display().to_string();
    let text = super::read::read_text(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            field: "-".into(),
            message: e.to_string(),
        }])
    })?;
    parse_yaml(&text, &name)
}

/// Parses configuration text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    parse_checked(text, file, |cfg: &Config| {
        let mut errs = check_peers(text, file, "heartbeat.peers", &cfg.heartbeat.peers);
        let mut hosts = std::collections::BTreeSet::new();
        for (i, e) in cfg.webhook.exporters.iter().enumerate() {
            let msg = if e.host.is_empty() || e.url.is_empty() {
                "missing host or url: an exporter needs both".to_string()
            } else if !hosts.insert(e.host.as_str()) {
                format!("duplicate exporter host {:?}", e.host.0)
            } else {
                continue;
            };
            errs.push(item_error(text, file, "webhook.exporters", i, &msg));
        }
        if *cfg.webhook.executor.retries > 10 {
            let (line, column) = locate_key(text, "webhook.executor.retries");
            errs.push(ConfigError {
                file: file.into(),
                line,
                column,
                field: "webhook.executor.retries".into(),
                message: "at most 10: each retry can take a whole migration".into(),
            });
        }
        for (i, p) in cfg.probes.iter().enumerate() {
            if p.domain.is_empty() || *p.target == ProbeTarget::Invalid {
                errs.push(item_error(
                    text,
                    file,
                    "probes",
                    i,
                    "missing domain or target: a probe needs both",
                ));
            }
        }
        errs
    })
}

/// Checks a list of peers (`path` locates it: "" for a whole document):
/// every entry has a name and an address, and names are unique.
pub fn check_peers(text: &str, file: &str, path: &str, peers: &[PeerConfig]) -> Vec<ConfigError> {
    let mut errs = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in peers.iter().enumerate() {
        let fresh = p.name.0.0.is_empty() || seen.insert(p.name.0.0.as_str());
        if p.name.0.0.is_empty() || p.address.0.0.is_empty() {
            errs.push(item_error(
                text,
                file,
                path,
                i,
                "missing name or address: a peer needs both",
            ));
        } else if !fresh {
            let msg = format!("duplicate peer name {:?}", p.name.0.0);
            errs.push(item_error(text, file, path, i, &msg));
        }
    }
    errs
}

fn item_error(text: &str, file: &str, path: &str, i: usize, message: &str) -> ConfigError {
    let (line, column) = locate_item(text, path, i);
    ConfigError {
        file: file.into(),
        line,
        column,
        field: if path.is_empty() {
            format!("[{i}]")
        } else {
            format!("{path}[{i}]")
        },
        message: message.into(),
    }
}

/// Parses YAML text into `T`, collecting every error; `file` names it in errors.
pub fn parse_yaml<T: DeserializeOwned + Default>(
    text: &str,
    file: &str,
) -> Result<T, ConfigErrors> {
    parse_checked(text, file, |_| vec![])
}

/// [`parse_yaml`] plus the checks of `check` on what parsed, all reported together.
pub fn parse_checked<T: DeserializeOwned + Default>(
    text: &str,
    file: &str,
    check: impl FnOnce(&T) -> Vec<ConfigError>,
) -> Result<T, ConfigErrors> {
    if let Err(e) = super::read::check_depth(text) {
        return Err(ConfigErrors(vec![ConfigError {
            file: file.into(),
            line: e.line,
            column: 0,
            field: "-".into(),
            message: e.to_string(),
        }]));
    }
    leaf::begin();
    let mut unknown = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let lenient: Result<T, _> =
        serde_ignored::deserialize(de, |p| unknown.push(p.to_string().replace(".?", "")));
    // A leaf that met a sequence or mapping where it wanted a scalar leaves
    // the event stream out of step: the lenient pass stops there (see
    // `leaf`). Parse again strictly: the first error, with its location, is
    // then reported alone.
    let parsed: Result<T, _> = match lenient {
        Err(e) if leaf::loses_step(&e.to_string()) => {
            leaf::take_errors();
            unknown.clear();
            leaf::strictly(|| serde_yaml_ng::from_str::<T>(text))
        }
        other => other,
    };
    let mut errors: Vec<ConfigError> = leaf::take_errors()
        .iter()
        .map(|m| from_yaml_message(m, file))
        .collect();
    match parsed {
        Ok(cfg) => {
            // An entry whose own value failed to parse is reported once, there.
            for c in check(&cfg) {
                let inner = format!("{}.", c.field);
                if !errors.iter().any(|e| e.field.starts_with(&inner)) {
                    errors.push(c);
                }
            }
            for path in unknown {
                let (line, column) = locate_key(text, &path);
                errors.push(ConfigError {
                    file: file.into(),
                    line,
                    column,
                    field: bracket_indices(&path),
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

/// Writes list indices as serde_yaml_ng does: `a.0.b` becomes `a[0].b`.
fn bracket_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    for seg in path.split('.') {
        if seg.parse::<usize>().is_ok() {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
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
        Some((f, msg)) if !f.contains(' ') => {
            (f.trim_start_matches('.').to_string(), msg.to_string())
        }
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

/// Finds the line and column of item `index` of the block-style list at the
/// dotted `path` ("" for a document that is a list).
fn locate_item(text: &str, path: &str, index: usize) -> (usize, usize) {
    let (start, key_indent) = if path.is_empty() {
        (0, None)
    } else {
        match locate_key(text, path) {
            (0, _) => return (0, 0),
            (l, c) => (l, Some(c - 1)),
        }
    };
    let mut item_indent = None;
    let mut n = 0;
    for (i, line) in text.lines().enumerate().skip(start) {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = line.len() - t.len();
        if key_indent.is_some_and(|k| ind <= k && !t.starts_with('-')) {
            break;
        }
        if !t.starts_with('-') {
            continue;
        }
        let want = *item_indent.get_or_insert(ind);
        if ind < want {
            break;
        }
        if ind == want {
            if n == index {
                return (i + 1, ind + 1);
            }
            n += 1;
        }
    }
    (0, 0)
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
