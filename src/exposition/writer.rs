//! The text format's writer: escaping, number formatting, and a [`Writer`]
//! of headers and samples over a `String`. Knows no metric.

use std::fmt::Write as _;

use crate::snapshot::Histogram;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `v` to `out` escaped as a label value (`\`, `"` and newline).
pub fn escape_label(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value: integers exactly, floats as Go's `strconv` would read them.
pub(crate) fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

pub(crate) fn push_u64(out: &mut String, v: u64) {
    // Most samples are 0 or 1 (one-hot states, online flags, error counters).
    if v < 10 {
        out.push(char::from(b'0' + v as u8));
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    while n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // ASCII digits: pushed as chars, no UTF-8 check of the buffer needed.
    out.reserve(buf.len() - i);
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// A value a series can carry.
#[derive(Clone, Copy)]
pub enum Val {
    U(u64),
    F(f64),
}

impl From<u64> for Val {
    fn from(v: u64) -> Self {
        Val::U(v)
    }
}

impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::F(v)
    }
}

/// Writes families and samples into a text buffer.
pub struct Writer<'a> {
    pub out: &'a mut String,
}

impl Writer<'_> {
    /// Writes the `# HELP` and `# TYPE` lines of a family.
    pub fn header(&mut self, name: &str, help: &str, typ: &str) {
        let o = &mut *self.out;
        o.push_str("# HELP ");
        o.push_str(name);
        o.push(' ');
        for c in help.chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                c => o.push(c),
            }
        }
        o.push_str("\n# TYPE ");
        o.push_str(name);
        o.push(' ');
        o.push_str(typ);
        o.push('\n');
    }

    /// Writes one sample; `labels` is already escaped (`a="b",c="d"`) or empty,
    /// `extra` is one more label already escaped, appended after a comma.
    pub fn sample(&mut self, name: &str, labels: &str, extra: &str, v: Val) {
        let o = &mut *self.out;
        o.push_str(name);
        if !labels.is_empty() || !extra.is_empty() {
            o.push('{');
            o.push_str(labels);
            if !labels.is_empty() && !extra.is_empty() {
                o.push(',');
            }
            o.push_str(extra);
            o.push('}');
        }
        o.push(' ');
        match v {
            Val::U(u) => push_u64(o, u),
            Val::F(f) => push_f64(o, f),
        }
        o.push('\n');
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, typ: &str, v: Val) {
        self.header(name, help, typ);
        self.sample(name, "", "", v);
    }

    /// Writes a histogram's `_bucket`, `_sum` and `_count` samples (no header).
    pub fn histogram(&mut self, name: &str, labels: &str, h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut le = String::with_capacity(24);
        for (b, c) in h.bounds.iter().zip(&h.counts) {
            le.clear();
            le.push_str("le=\"");
            push_f64(&mut le, *b);
            le.push('"');
            self.sample(&bucket, labels, &le, Val::U(*c));
        }
        self.sample(&bucket, labels, "le=\"+Inf\"", Val::U(h.count));
        self.sample(&format!("{name}_sum"), labels, "", Val::F(h.sum));
        self.sample(&format!("{name}_count"), labels, "", Val::U(h.count));
    }
}

/// Builds the escaped `name="…"` pair.
pub fn label(name: &str, value: &str) -> String {
    let mut s = String::with_capacity(name.len() + value.len() + 3);
    s.push_str(name);
    s.push_str("=\"");
    escape_label(&mut s, value);
    s.push('"');
    s
}
