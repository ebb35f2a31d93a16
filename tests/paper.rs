//! `xentinel paper`: the seed paper's tables from the simulator's own
//! `/metrics`. docs/paper.md is the command's Markdown and must not drift;
//! a scenario input changed on the command line moves the printed figures
//! the way the mechanism says; every row says whether it was fitted.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_xentinel");

fn paper(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("paper").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "xentinel paper {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Table 5's rows as (label → xentinel's figure), from the JSON output.
fn table5(args: &[&str]) -> std::collections::BTreeMap<String, f64> {
    let mut a = vec!["--table", "5", "--format", "json"];
    a.extend_from_slice(args);
    let v: Value = serde_json::from_str(&paper(&a)).unwrap();
    let t = &v.as_array().unwrap()[0];
    assert_eq!(t["table"], 5);
    t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_str().unwrap().to_string(),
                r["xentinel"].as_f64().unwrap(),
            )
        })
        .collect()
}

const REACT: &str = "reacting: added delay (s)";
const NOT: &str = "not reacting: added delay (s)";
const DURATION: &str = "reacting: migration duration (s)";

#[test]
fn docs_paper_md_is_the_commands_markdown() {
    let now = paper(&["--format", "markdown"]);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/paper.md");
    if std::env::var_os("XENTINEL_BLESS").is_some() {
        std::fs::write(path, &now).unwrap();
    }
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        doc == now,
        "docs/paper.md differs from `xentinel paper --format markdown`: regenerate it with \
         `cargo run -- paper --format markdown > docs/paper.md` (or XENTINEL_BLESS=1 cargo test --test paper)"
    );
    // The text output is the same comparison: five tables and the summary.
    let text = paper(&[]);
    for n in 1..=5 {
        assert!(text.contains(&format!("Table {n}: ")), "{text}");
    }
    assert!(text.contains("held-out rows"), "{text}");
}

#[test]
fn every_row_is_fit_or_held_out_and_every_miss_is_counted() {
    let v: Value = serde_json::from_str(&paper(&["--format", "json"])).unwrap();
    let tables = v.as_array().unwrap();
    assert_eq!(tables.len(), 5);
    let mut misses = 0;
    let mut held_out = 0;
    for t in tables {
        for r in t["rows"].as_array().unwrap() {
            let role = r["role"].as_str().unwrap();
            assert!(["fit", "held out", "info"].contains(&role), "{r}");
            if role == "info" {
                assert!(r["paper"].is_null() && r["ok"].is_null(), "{r}");
                continue;
            }
            held_out += usize::from(role == "held out");
            let (p, x) = (
                r["paper"].as_f64().unwrap(),
                r["xentinel"].as_f64().unwrap(),
            );
            assert!(x.is_finite(), "{r}");
            if p != 0.0 {
                let ratio = r["ratio"].as_f64().unwrap();
                assert!((ratio - x / p).abs() < 1e-9, "{r}");
            }
            // A fitted row is hit by construction; it must come out so.
            if role == "fit" {
                assert!((x - p).abs() <= 1e-6 * p.abs().max(1.0), "{r}");
            }
            misses += usize::from(r["ok"] == false);
        }
    }
    assert!(held_out > 2 * 5, "most rows are predictions: {held_out}");
    let text = paper(&[]);
    assert!(
        text.contains(&format!(" {misses} misses")),
        "the summary counts {misses} misses: {text}"
    );
    assert_eq!(text.matches(" MISS").count(), misses, "{text}");
}

#[test]
fn one_table_alone_and_a_bad_table_is_refused() {
    let t4 = paper(&["--table", "4"]);
    assert!(t4.starts_with("Table 4: "), "{t4}");
    assert!(!t4.contains("Table 5"), "{t4}");
    let out = Command::new(BIN)
        .args(["paper", "--table", "6"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 is not in 1..=5"));
    let out = Command::new(BIN)
        .args(["paper", "--table5.link-mbit", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_higher_dirty_rate_lengthens_the_migration_and_its_outage_not_the_restart() {
    let idle = table5(&[]);
    let hot = table5(&["--table5.dirty-rate", "20000"]);
    // 20 000 pages/s at 1 Gbit/s: Xen's five iterations end with ~65 MB
    // still dirty, sent while the domain is paused.
    assert!(hot[DURATION] > idle[DURATION] + 3.0, "{idle:?} {hot:?}");
    assert!(hot[REACT] > 10.0 * idle[REACT], "{idle:?} {hot:?}");
    // A restart does not copy memory: the dirty rate cannot move it.
    assert_eq!(hot[NOT], idle[NOT]);
}

#[test]
fn a_faster_link_shortens_the_migration_and_its_outage() {
    let slow = table5(&["--table5.dirty-rate", "20000"]);
    let fast = table5(&[
        "--table5.dirty-rate",
        "20000",
        "--table5.link-mbit",
        "10000",
    ]);
    assert!(fast[DURATION] < slow[DURATION] / 5.0, "{slow:?} {fast:?}");
    assert!(fast[REACT] < slow[REACT] / 5.0, "{slow:?} {fast:?}");
    // Converged on the fast link: the outage is the stop-and-copy overhead
    // (50.5 ms) seen on a 10 ms grid.
    assert!((0.04..=0.07).contains(&fast[REACT]), "{fast:?}");
}
