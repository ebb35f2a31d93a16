//! A tiny parser for the Prometheus text exposition format (version 0.0.4), enough for tests:
//! one [`Sample`] per series line (name, labels, value), `# HELP`/`# TYPE` and blank lines skipped.
//! Label values may contain the escapes `\\`, `\"` and `\n`; an optional timestamp is ignored.

use std::collections::BTreeMap;

/// One series line.
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

/// Parses a whole exposition. Errors name the 1-based line number and what was wrong.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}: {raw:?}", i + 1))?);
    }
    Ok(out)
}

/// Parses one series line: `name{label="value",...} value [timestamp]`.
pub fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("missing value")?;
    let value = parse_value(value)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
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
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in label value: {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("duplicate label {key:?}"));
        }
        s = s[end + 1..].trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
    }
}

/// All samples called `name` whose labels include `want`.
pub fn select<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && s.matches(want))
        .collect()
}

/// The single sample called `name` with labels `want`; an error when there are none or several.
pub fn one<'a>(
    samples: &'a [Sample],
    name: &str,
    want: &[(&str, &str)],
) -> Result<&'a Sample, String> {
    match select(samples, name, want).as_slice() {
        [s] => Ok(s),
        [] => Err(format!("no {name} series with {want:?}")),
        many => Err(format!("{} {name} series with {want:?}", many.len())),
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
}
