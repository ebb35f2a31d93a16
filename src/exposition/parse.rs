//! The one parser of the text exposition format (version 0.0.4) in the
//! crate: the planner reads exporters' `/metrics` with it, and the tests read
//! every scrape with it. One [`Sample`] per series line (name, labels,
//! value); `# HELP`/`# TYPE` comments and blank lines skipped. Label values
//! may use the escapes `\\`, `\"` and `\n`; an optional timestamp is checked
//! and ignored.

use std::collections::BTreeMap;

/// One series line, or one element of a PromQL instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, or "" when absent (as PromQL sees it).
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map(String::as_str).unwrap_or("")
    }

    /// True when every `(key, value)` pair of `want` is among the labels.
    pub fn matches(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == *v)
    }
}

/// Why a text is not an exposition: the 1-based line, what was wrong, and
/// the line itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub problem: LineError,
    pub text: String,
}

/// What is wrong with one series line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("bad metric name")]
    Name,
    #[error("label without '='")]
    NoEquals,
    #[error("bad label name {0:?}")]
    LabelName(String),
    #[error("label value not quoted")]
    Unquoted,
    #[error("unterminated label value")]
    Unterminated,
    #[error("bad escape in label value: {0:?}")]
    Escape(Option<char>),
    #[error("duplicate label {0:?}")]
    Duplicate(String),
    #[error("expected ',' or '}}' after a label")]
    AfterLabel,
    #[error("missing value")]
    NoValue,
    #[error("bad value {0:?}")]
    Value(String),
    #[error("bad timestamp {0:?}")]
    Timestamp(String),
    #[error("trailing fields")]
    Trailing,
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|problem| ParseError {
            line: i + 1,
            problem,
            text: raw.to_string(),
        })?);
    }
    Ok(out)
}

/// Parses one series line: `name{label="value",...} value [timestamp]`.
pub fn parse_line(line: &str) -> Result<Sample, LineError> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(LineError::Name);
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or(LineError::NoValue)?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| LineError::Timestamp(ts.to_string()))?;
    }
    if fields.next().is_some() {
        return Err(LineError::Trailing);
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` (the text after `{`); returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, LineError> {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let eq = s.find('=').ok_or(LineError::NoEquals)?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LineError::LabelName(key.to_string()));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or(LineError::Unquoted)?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(LineError::Unterminated),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(LineError::Escape(other.map(|(_, c)| c))),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(LineError::Duplicate(key.to_string()));
        }
        s = s[end + 1..].trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err(LineError::AfterLabel);
        }
    }
}

/// A sample value as Prometheus writes them (Go's `ParseFloat` spellings of
/// the infinities and NaN included).
pub fn parse_value(v: &str) -> Result<f64, LineError> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v
            .parse::<f64>()
            .map_err(|_| LineError::Value(v.to_string())),
    }
}

/// All samples called `name` whose labels include `want`.
pub fn select<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && s.matches(want))
        .collect()
}

/// Not exactly one series matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("no {name} series with {want}")]
    None { name: String, want: String },
    #[error("{count} {name} series with {want}")]
    Many {
        count: usize,
        name: String,
        want: String,
    },
}

/// The single sample called `name` with labels `want`; an error when there
/// are none or several.
pub fn one<'a>(
    samples: &'a [Sample],
    name: &str,
    want: &[(&str, &str)],
) -> Result<&'a Sample, SelectError> {
    match select(samples, name, want).as_slice() {
        [s] => Ok(s),
        [] => Err(SelectError::None {
            name: name.to_string(),
            want: format!("{want:?}"),
        }),
        many => Err(SelectError::Many {
            count: many.len(),
            name: name.to_string(),
            want: format!("{want:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_values_and_escapes() {
        let text = "# HELP xen_domain_info Domain info.\n# TYPE xen_domain_info gauge\n\
            xen_domain_info{domain=\"a\\\"b\\\\c\\nd\",uuid=\"u-1\",domid=\"3\"} 1\n\
            \n\
            xen_up 1 1700000000000\n\
            x_total{le=\"+Inf\",} +Inf\n\
            y{a=\"}{,=\"} -1.5e3\n\
            z NaN\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].name, "xen_domain_info");
        assert_eq!(s[0].label("domain"), "a\"b\\c\nd");
        assert_eq!(s[0].label("domid"), "3");
        assert_eq!(s[0].value, 1.0);
        assert_eq!(s[1].name, "xen_up");
        assert!(s[1].labels.is_empty());
        assert_eq!(s[2].value, f64::INFINITY);
        assert_eq!(s[3].label("a"), "}{,=");
        assert_eq!(s[3].value, -1500.0);
        assert!(s[4].value.is_nan());
        assert_eq!(
            one(&s, "xen_domain_info", &[("uuid", "u-1")])
                .unwrap()
                .value,
            1.0
        );
        assert!(one(&s, "xen_domain_info", &[("uuid", "nope")]).is_err());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "m{a=\"x} 1",
            "m{a=x} 1",
            "m{a=\"x\"} one",
            "m 1 2 3",
            "{a=\"x\"} 1",
            "m{a=\"\\q\"} 1",
            "m{a=\"1\",a=\"2\"} 1",
            "m{a=\"1\" b=\"2\"} 1",
            "m",
        ] {
            assert!(parse_line(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let t = "# HELP x y\n\nx{a=\"q\\\"\\\\\\n\",b=\"}\"} 1.5 123\nup 1\nbad{a=\"x\" 1\n";
        assert!(parse(t).unwrap_err().to_string().starts_with("line 5:"));
        let v = parse(&t[..t.rfind("bad").unwrap()]).unwrap();
        assert_eq!(v[0].name, "x");
        assert_eq!(v[0].labels["a"], "q\"\\\n");
        assert_eq!(v[0].labels["b"], "}");
        assert_eq!(
            (v[0].value, v[1].name.as_str(), v[1].value),
            (1.5, "up", 1.0)
        );
    }
}
