//! Grafana dashboards of the stack: loading, walking panels and queries, the metric names a query uses, and substituting template variables so that a query can run against a real Prometheus.
#![allow(dead_code)] // Each test crate uses a different part of this module.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The repository's root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `grafana/dashboards/`.
pub fn dashboards_dir() -> PathBuf {
    repo_root().join("grafana").join("dashboards")
}

/// One dashboard file.
pub struct Dashboard {
    /// File name, e.g. `cluster.json`.
    pub file: String,
    pub json: Value,
}

/// Every `*.json` in `dir`, sorted by file name. Panics naming the file on unreadable JSON.
pub fn load_dashboards_from(dir: &Path) -> Vec<Dashboard> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            Dashboard {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                json,
            }
        })
        .collect()
}

/// Every dashboard in `grafana/dashboards/`.
pub fn load_dashboards() -> Vec<Dashboard> {
    load_dashboards_from(&dashboards_dir())
}

impl Dashboard {
    pub fn uid(&self) -> Option<&str> {
        self.json.get("uid").and_then(Value::as_str)
    }

    /// `file (uid)`, for messages.
    pub fn name(&self) -> String {
        format!("{} ({})", self.file, self.uid().unwrap_or("no uid"))
    }

    /// Every panel, the panels inside rows included, rows themselves too.
    pub fn panels(&self) -> Vec<&Value> {
        fn walk<'a>(panels: Option<&'a Value>, out: &mut Vec<&'a Value>) {
            for panel in panels.and_then(Value::as_array).into_iter().flatten() {
                out.push(panel);
                walk(panel.get("panels"), out);
            }
        }
        let mut out = Vec::new();
        walk(self.json.get("panels"), &mut out);
        out
    }

    /// The template variables (`templating.list`).
    pub fn variables(&self) -> &[Value] {
        self.json
            .pointer("/templating/list")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The annotation queries (`annotations.list`), Grafana's built-in one excluded.
    pub fn annotations(&self) -> Vec<&Value> {
        self.json
            .pointer("/annotations/list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|a| a.get("builtIn").and_then(Value::as_u64).unwrap_or(0) == 0)
            .collect()
    }

    /// Every PromQL query of the dashboard: panel targets, annotations and variable queries.
    pub fn queries(&self) -> Vec<Query> {
        let dashboard = self.name();
        let mut out = Vec::new();
        for panel in self.panels() {
            if is_row(panel) {
                continue;
            }
            for target in panel
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push(Query {
                    dashboard: dashboard.clone(),
                    origin: Origin::Panel {
                        id: panel.get("id").and_then(Value::as_u64).unwrap_or(0),
                        title: str_field(panel, "title").to_owned(),
                        ref_id: str_field(target, "refId").to_owned(),
                    },
                    expr: str_field(target, "expr").to_owned(),
                    instant: target.get("instant").and_then(Value::as_bool) == Some(true),
                });
            }
        }
        for annotation in self.annotations() {
            out.push(Query {
                dashboard: dashboard.clone(),
                origin: Origin::Annotation {
                    name: str_field(annotation, "name").to_owned(),
                },
                expr: str_field(annotation, "expr").to_owned(),
                instant: false,
            });
        }
        for variable in self.variables() {
            if str_field(variable, "type") != "query" {
                continue;
            }
            out.push(Query {
                dashboard: dashboard.clone(),
                origin: Origin::Variable {
                    name: str_field(variable, "name").to_owned(),
                },
                expr: variable_query(variable).to_owned(),
                instant: true,
            });
        }
        out
    }
}

/// A field that should be a string, or "" when absent or not a string.
pub fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn is_row(panel: &Value) -> bool {
    str_field(panel, "type") == "row"
}

/// A query variable's query: `query` is either a string or `{ "query": "..." }`.
pub fn variable_query(variable: &Value) -> &str {
    match variable.get("query") {
        Some(Value::String(s)) => s,
        Some(q) => str_field(q, "query"),
        None => "",
    }
}

/// Where a query comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    Panel {
        id: u64,
        title: String,
        ref_id: String,
    },
    Annotation {
        name: String,
    },
    Variable {
        name: String,
    },
}

/// One PromQL query of a dashboard, with its template variables still in it.
#[derive(Clone, Debug)]
pub struct Query {
    /// `file (uid)` of the dashboard.
    pub dashboard: String,
    pub origin: Origin,
    pub expr: String,
    /// Run as an instant query (tables, variables) rather than a range query.
    pub instant: bool,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Panel { id, title, ref_id } => {
                write!(f, "{}: panel {id} {title:?} {ref_id}", self.dashboard)
            }
            Origin::Annotation { name } => write!(f, "{}: annotation {name:?}", self.dashboard),
            Origin::Variable { name } => write!(f, "{}: variable ${name}", self.dashboard),
        }
    }
}

/// A variable query `label_values(selector, label)` or `label_values(label)`, split into the
/// optional series selector and the label name. Prometheus answers it with
/// `/api/v1/label/<label>/values?match[]=<selector>`.
pub fn parse_label_values(query: &str) -> Option<(Option<&str>, &str)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?
        .trim();
    match inner.rsplit_once(',') {
        Some((selector, label)) => Some((Some(selector.trim()), label.trim())),
        None => Some((None, inner)),
    }
}

// ---------------------------------------------------------------------------------------------
// Template variables

/// A reference to a template variable in a query: `$name`, `${name}`, `${name:format}` or
/// `[[name]]`, as a byte range of the query and the variable's name.
fn variable_refs(expr: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let bytes = expr.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut refs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            if let Some(len) = expr[i + 2..].find('}') {
                let body = &expr[i + 2..i + 2 + len];
                let name = body.split(':').next().unwrap_or(body);
                refs.push((i..i + 3 + len, name));
                i += 3 + len;
                continue;
            }
        } else if bytes[i] == b'$' {
            let len = bytes[i + 1..].iter().take_while(|&&b| is_ident(b)).count();
            if len > 0 {
                refs.push((i..i + 1 + len, &expr[i + 1..i + 1 + len]));
                i += 1 + len;
                continue;
            }
        } else if expr[i..].starts_with("[[") {
            if let Some(len) = expr[i + 2..].find("]]") {
                let body = &expr[i + 2..i + 2 + len];
                if !body.is_empty() && body.bytes().all(is_ident) {
                    refs.push((i..i + 4 + len, body));
                    i += 4 + len;
                    continue;
                }
            }
        }
        i += 1;
    }
    refs
}

/// `$1`, `$2`…: capture-group references in `label_replace` replacements, not variables.
fn is_capture_group(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_digit())
}

/// The names of the template variables a query refers to, capture groups (`$1`) excluded.
pub fn variables_used(expr: &str) -> BTreeSet<String> {
    variable_refs(expr)
        .into_iter()
        .map(|(_, name)| name)
        .filter(|name| !is_capture_group(name))
        .map(str::to_owned)
        .collect()
}

/// Grafana's built-in variables (those our dashboards may use).
pub const BUILTIN_VARIABLES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

/// Values for template variables, to turn a dashboard query into plain PromQL.
///
/// The defaults select everything: `job` and `instance` variables become `.+` (their `allValue`:
/// the label present, any value), other label variables `.*` (dashboards always match them
/// with `=~`), `$__rate_interval` becomes `1m` (four 15 s scrapes, as Grafana computes it with
/// the datasource's `timeInterval` of 15s), `$__interval` the scrape interval, `$__range` 1h.
/// A test against a real Prometheus can pin any of them with [`Substitution::set`].
#[derive(Clone, Debug)]
pub struct Substitution {
    values: BTreeMap<String, String>,
}

impl Default for Substitution {
    fn default() -> Self {
        let mut values = BTreeMap::new();
        for (name, value) in [
            ("datasource", "xentinel-prometheus"),
            ("job", ".+"),
            ("instance", ".+"),
            ("exporter_job", ".+"),
            ("exporter_instance", ".+"),
            ("host", ".*"),
            ("domain", ".*"),
            ("__rate_interval", "1m"),
            ("__interval", "15s"),
            ("__interval_ms", "15000"),
            ("__range", "1h"),
            ("__range_s", "3600"),
            ("__range_ms", "3600000"),
        ] {
            values.insert(name.to_owned(), value.to_owned());
        }
        Substitution { values }
    }
}

impl Substitution {
    /// Sets (or overrides) one variable's value, e.g. `.set("host", "xen1")`.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.values.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The query with every variable replaced by its value. `${name:format}` ignores the
    /// format. Capture groups (`$1`) are left alone. Errs naming every unknown variable.
    pub fn apply(&self, expr: &str) -> Result<String, String> {
        let mut out = String::with_capacity(expr.len());
        let mut unknown = BTreeSet::new();
        let mut last = 0;
        for (range, name) in variable_refs(expr) {
            if is_capture_group(name) {
                continue;
            }
            out.push_str(&expr[last..range.start]);
            match self.values.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    unknown.insert(name);
                    out.push_str(&expr[range.clone()]);
                }
            }
            last = range.end;
        }
        out.push_str(&expr[last..]);
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(format!(
                "no value for variable(s) {unknown:?} in query: {expr}"
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metric names

/// Replaces string literals, label matchers (`{...}`), ranges (`[...]`), `${...}` variables
/// and the label lists of `by`, `without`, `on`, `ignoring`, `group_left`, `group_right` with
/// spaces, leaving the identifiers that can be metric or function names.
fn strip_non_metric_parts(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len());
    let mut i = 0;
    let mut word = String::new();
    while i < chars.len() {
        let c = chars[i];
        let skip_to = |open: char, close: char, from: usize| -> usize {
            // Index just past the `close` matching chars[from] == open, strings skipped.
            let mut depth = 0;
            let mut j = from;
            while j < chars.len() {
                match chars[j] {
                    '"' | '\'' | '`' => {
                        let quote = chars[j];
                        j += 1;
                        while j < chars.len() && chars[j] != quote {
                            if chars[j] == '\\' {
                                j += 1;
                            }
                            j += 1;
                        }
                    }
                    ch if ch == open => depth += 1,
                    ch if ch == close => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            chars.len()
        };
        let next = match c {
            '"' | '\'' | '`' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                Some(j + 1)
            }
            '{' => Some(skip_to('{', '}', i)),
            '[' => Some(skip_to('[', ']', i)),
            '$' if chars.get(i + 1) == Some(&'{') => Some(skip_to('{', '}', i + 1)),
            '(' if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) =>
            {
                Some(skip_to('(', ')', i))
            }
            _ => None,
        };
        match next {
            Some(j) => {
                out.push(' ');
                word.clear();
                i = j.min(chars.len());
            }
            None => {
                let ident = |ch: char| ch.is_alphanumeric() || ch == '_' || ch == ':';
                if ident(c) {
                    if i == 0 || !ident(chars[i - 1]) {
                        word.clear(); // a new identifier starts
                    }
                    word.push(c);
                } else if !c.is_whitespace() {
                    word.clear();
                }
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The metric names a query uses that belong to this project: identifiers starting with
/// `xen_` or `xentinel_`, and recording-rule names (those containing a colon).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let stripped = strip_non_metric_parts(expr);
    stripped
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| !token.is_empty() && !token.starts_with(|c: char| c.is_ascii_digit()))
        .filter(|token| {
            token.starts_with("xen_") || token.starts_with("xentinel_") || token.contains(':')
        })
        .map(str::to_owned)
        .collect()
}

/// Every metric name the contract in `docs/metrics.md` defines, with `_bucket`, `_sum` and
/// `_count` for histograms, and the shorthand rows expanded (`... and _packets_` after
/// `xen_domain_network_receive_bytes_total`, `_received_total` after
/// `xentinel_heartbeat_sent_total`).
pub fn contract_metric_names_from(markdown: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        if !line.trim_start().starts_with('|') || cells.len() < 2 {
            continue;
        }
        let histogram = cells[1].trim() == "histogram";
        let mut base: Option<String> = None;
        let mut row = Vec::new();
        for (k, token) in cells[0].split('`').enumerate() {
            if k % 2 == 0 || token.is_empty() {
                continue; // outside backticks
            }
            if token.starts_with('_') {
                if let Some(base) = &base {
                    row.push(expand_shorthand(base, token));
                }
            } else if token.starts_with("xen_") || token.starts_with("xentinel_") {
                base = Some(token.to_owned());
                row.push(token.to_owned());
            }
        }
        for name in row {
            if histogram {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            names.insert(name);
        }
    }
    names
}

/// `_packets_` replaces the next-to-last segment of the base name, `_received_total` the last
/// two: a shorthand ending in `_` stops before the base's last segment.
fn expand_shorthand(base: &str, shorthand: &str) -> String {
    let segments: Vec<&str> = base.split('_').collect();
    let replacement: Vec<&str> = shorthand.split('_').filter(|s| !s.is_empty()).collect();
    let end = if shorthand.ends_with('_') {
        segments.len() - 1
    } else {
        segments.len()
    };
    let start = end.saturating_sub(replacement.len());
    let mut out: Vec<&str> = segments[..start].to_vec();
    out.extend(&replacement);
    out.extend(&segments[end..]);
    out.join("_")
}

/// [`contract_metric_names_from`] `docs/metrics.md`.
pub fn contract_metric_names() -> BTreeSet<String> {
    let path = repo_root().join("docs").join("metrics.md");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    contract_metric_names_from(&text)
}

/// `prometheus/rules/*.yml`, sorted.
pub fn rule_files() -> Vec<PathBuf> {
    let dir = repo_root().join("prometheus").join("rules");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    files
}

/// Every rule (`groups[].rules[]`) of every rule file, as YAML values.
pub fn rules() -> Vec<serde_yaml_ng::Value> {
    let mut rules = Vec::new();
    for path in rule_files() {
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        for group in doc["groups"].as_sequence().into_iter().flatten() {
            rules.extend(group["rules"].as_sequence().into_iter().flatten().cloned());
        }
    }
    rules
}

/// The names the recording rules record.
pub fn recording_rule_names() -> BTreeSet<String> {
    rules()
        .iter()
        .filter_map(|rule| rule["record"].as_str().map(str::to_owned))
        .collect()
}

/// Every metric name a query may use: the contract's and the recording rules'.
pub fn known_metric_names() -> BTreeSet<String> {
    let mut names = contract_metric_names();
    names.extend(recording_rule_names());
    names
}

// ---------------------------------------------------------------------------------------------
// Series selectors

/// One series selector of a query: its metric name (if written before the braces) and its
/// label matchers `(label, operator, value)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    pub metric: Option<String>,
    pub matchers: Vec<(String, String, String)>,
}

impl Selector {
    /// The value of the first matcher on `label`, if any.
    pub fn matcher(&self, label: &str) -> Option<&str> {
        self.matchers
            .iter()
            .find(|(l, _, _)| l == label)
            .map(|(_, _, v)| v.as_str())
    }
}

/// Words that are followed by something other than a selector: aggregations (`sum by (...)
/// (...)`), set and modifier keywords.
const NOT_SELECTORS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Index just past the `close` that matches `chars[from] == open`, skipping quoted strings.
fn past_matching(chars: &[char], from: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut j = from;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => j = past_string(chars, j) - 1,
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    chars.len()
}

/// Index just past the string literal starting at `chars[from]`.
fn past_string(chars: &[char], from: usize) -> usize {
    let quote = chars[from];
    let mut j = from + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// The matchers between `{` and `}` (exclusive).
fn parse_matchers(body: &str) -> Vec<(String, String, String)> {
    let chars: Vec<char> = body.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let op_start = i;
        while i < chars.len() && matches!(chars[i], '=' | '!' | '~') {
            i += 1;
        }
        let op: String = chars[op_start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if label.is_empty() || op.is_empty() || i >= chars.len() {
            break;
        }
        let end = past_string(&chars, i);
        let value: String = chars[i + 1..end.saturating_sub(1).max(i + 1)]
            .iter()
            .collect();
        out.push((label, op, value));
        i = end;
    }
    out
}

/// Every series selector of a PromQL query, in order: `metric`, `metric{...}` and `{...}`.
/// Function and aggregation names, keywords, numbers, strings and ranges are skipped.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let is_start = |c: char| c.is_alphabetic() || c == '_' || c == ':';
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = past_string(&chars, i);
        } else if c == '[' {
            i = past_matching(&chars, i, '[', ']');
        } else if c == '$' {
            // A template variable outside a string (a range like [$__range] is skipped above).
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || matches!(chars[i], '{' | '}')) {
                i += 1;
            }
        } else if c == '{' {
            let end = past_matching(&chars, i, '{', '}');
            let body: String = chars[i + 1..end - 1].iter().collect();
            out.push(Selector {
                metric: None,
                matchers: parse_matchers(&body),
            });
            i = end;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            if next == Some('(') {
                if matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    i = past_matching(&chars, j, '(', ')');
                }
                continue; // a function call: its arguments are scanned next
            }
            if NOT_SELECTORS.contains(&word.as_str()) {
                continue;
            }
            let mut sel = Selector {
                metric: Some(word),
                matchers: Vec::new(),
            };
            if next == Some('{') {
                let end = past_matching(&chars, j, '{', '}');
                let body: String = chars[j + 1..end - 1].iter().collect();
                sel.matchers = parse_matchers(&body);
                i = end;
            }
            out.push(sel);
        } else {
            i += 1;
        }
    }
    out
}

/// Whether a metric name is a counter or a histogram's cumulative series by its suffix: a
/// value that only grows, meaningless shown raw.
pub fn is_counter(metric: &str) -> bool {
    ["_total", "_count", "_sum", "_bucket"]
        .iter()
        .any(|s| metric.ends_with(s))
}
