//! The text exposition format for tests: the product's parser
//! (`xentinel::exposition::parse`), one [`Sample`] per series line.

#[allow(unused_imports)]
pub use xentinel::exposition::parse::{Sample, one, select};

/// Parses a whole exposition. Errors name the 1-based line number and what was wrong.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    xentinel::exposition::parse::parse(text).map_err(|e| e.to_string())
}
