//! gzip for `/metrics`: whether a request's `Accept-Encoding` allows it, and a
//! streamed body that compresses the exposition piece by piece, so a
//! compressed scrape holds no more of the text than a plain one does.

use std::io::Write;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::exposition::Rendering;
use crate::snapshot::Snapshot;

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): `gzip` with a
/// non-zero quality, or, when gzip is not named, `*` with one; an explicit
/// `gzip;q=0` refuses it whatever `*` says.
pub fn accepted(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let q = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") {
            gzip = Some(q);
        } else if coding == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// A gzip body of the whole exposition of `snap`: pieces of about `chunk`
/// bytes of text are rendered when hyper asks for more and fed through one
/// encoder; each non-empty output of the encoder is one piece of the body.
/// Level 1: the text is repetitive enough that higher levels gain little and
/// cost several times the CPU of rendering it.
pub fn body(snap: Snapshot, r: Rendering, chunk: usize) -> Body {
    let enc = GzEncoder::new(Vec::with_capacity(chunk / 4), Compression::fast());
    let state = Some((snap, r, enc, String::with_capacity(chunk + chunk / 8)));
    let stream = futures::stream::unfold(state, move |state| async move {
        let (snap, mut r, mut enc, mut text) = state?;
        loop {
            text.clear();
            let done = r.fill(&snap, &mut text, chunk);
            if let Err(e) = enc.write_all(text.as_bytes()) {
                return Some((Err(e), None));
            }
            if done {
                return Some((enc.finish(), None));
            }
            // The encoder holds back output until it has a block; render
            // on until it gives some, so no empty piece is sent.
            if !enc.get_ref().is_empty() {
                let out = std::mem::take(enc.get_mut());
                return Some((Ok(out), Some((snap, r, enc, text))));
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        h
    }

    #[test]
    fn accept_encoding_is_read_as_rfc_9110_says() {
        assert!(accepted(&with("gzip")));
        assert!(accepted(&with("gzip, deflate, br")));
        assert!(accepted(&with("deflate, GZIP;q=0.5")));
        assert!(accepted(&with("*")));
        assert!(!accepted(&with("gzip;q=0")));
        assert!(!accepted(&with("gzip; q=0.0, identity")));
        assert!(!accepted(&with("deflate, br")));
        assert!(!accepted(&with("xgzip")));
        assert!(!accepted(&HeaderMap::new()));
        // the explicit refusal wins over the wildcard, in either order
        assert!(!accepted(&with("gzip;q=0, *")));
        assert!(!accepted(&with("*, gzip;q=0")));
        assert!(!accepted(&with("*;q=0")));
        assert!(accepted(&with("*;q=0.1, br")));
    }
}
