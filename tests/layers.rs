//! The architecture, checked: the layer table of `src/lib.rs`'s crate
//! documentation is parsed, every file under `src/` is read, and every path
//! into the crate (`use crate::…`, `crate::` paths in code, `super::` climbing
//! out of a folder, `pub use` re-exports) must point to the importer's own
//! layer or one below it. A failure names each edge:
//! `src/a.rs:12 imports crate::b::C (layer 8 migration above 3 sim)`.
//!
//! It also counts import circles between files (a module using its own
//! submodules is its structure, not a circle): there must be none.
//! `cargo test --test layers -- --nocapture` prints the figures;
//! `XENTINEL_LAYERS_SRC=<other checkout>/src cargo test --test layers circles
//! -- --nocapture` counts the circles of another tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One layer of the table: its rank (1 = bottom), name and top-level modules.
#[derive(Debug, Clone, PartialEq)]
struct Layer {
    rank: usize,
    name: String,
    modules: Vec<String>,
}

/// Parses the table rows `//! | 3 | sim | `sim` | … |` of the crate doc.
fn parse_layers(lib_rs: &str) -> Result<Vec<Layer>, String> {
    let mut layers = Vec::new();
    for line in lib_rs.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(rank) = cells[0].parse::<usize>() else {
            continue; // the header and the separator
        };
        if cells.len() < 3 {
            return Err(format!("layer row without modules: {line:?}"));
        }
        let modules: Vec<String> = cells[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|m| m.trim_start_matches("crate::").to_string())
            .collect();
        if modules.is_empty() {
            return Err(format!("layer {rank} names no module: {line:?}"));
        }
        if rank != layers.len() + 1 {
            return Err(format!(
                "layer ranks must count up from 1; found {rank}: {line:?}"
            ));
        }
        layers.push(Layer {
            rank,
            name: cells[1].to_string(),
            modules,
        });
    }
    if layers.is_empty() {
        return Err("no layer table in src/lib.rs (rows `//! | rank | name | `module` |`)".into());
    }
    Ok(layers)
}

/// A source file: its path relative to the crate, its module path and text.
struct SourceFile {
    path: String,
    module: Vec<String>,
    text: String,
}

/// `src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`, `src/lib.rs` the root;
/// `src/main.rs` (the binary) is called `main`.
fn module_of(rel: &str) -> Vec<String> {
    let p = rel.trim_start_matches("src/").trim_end_matches(".rs");
    if p == "lib" {
        return vec![];
    }
    let mut v: Vec<String> = p.split('/').map(String::from).collect();
    if v.last().is_some_and(|l| l == "mod") {
        v.pop();
    }
    v
}

fn read_tree(src: &Path) -> Vec<SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = format!("src/{}", p.strip_prefix(src).unwrap().display());
            SourceFile {
                module: module_of(&rel),
                text: std::fs::read_to_string(&p).unwrap(),
                path: rel,
            }
        })
        .collect()
}

/// Code without comments, string and char literals (each replaced by a
/// space, newlines kept so line numbers hold).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && !c
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match c.get(j) {
                    None => break,
                    Some('"') if (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(&ch) => {
                        blank(&mut out, ch);
                        j += 1;
                    }
                }
            }
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                }
                i += 1;
            }
            i += 1;
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push(c[i]);
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // ::
    Open,
    Close,
    Comma,
    Star,
    Other,
}

fn tokens(code: &str) -> Vec<(usize, Tok)> {
    let mut out = Vec::new();
    let c: Vec<char> = code.chars().collect();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((line, Tok::Ident(c[s..i].iter().collect())));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((line, Tok::Path));
            i += 2;
        } else {
            out.push((
                line,
                match ch {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ',' => Tok::Comma,
                    '*' => Tok::Star,
                    _ => Tok::Other,
                },
            ));
            i += 1;
        }
    }
    out
}

/// A path into the crate found in a file.
#[derive(Debug, Clone, PartialEq)]
struct Ref {
    line: usize,
    /// Absolute: module segments, then maybe an item.
    target: Vec<String>,
    /// Part of a `pub use` (a re-export: the module's facade).
    reexport: bool,
}

/// Every path into the crate of a file, resolved (use groups expanded):
/// `crate::…`, `super::…`, and paths through the file's own submodules
/// (`mod x;` then `x::…`).
fn refs(file: &SourceFile) -> Vec<Ref> {
    let toks = tokens(&strip(&file.text));
    let children: BTreeSet<&str> = toks
        .windows(3)
        .filter_map(|w| match (&w[0].1, &w[1].1, &w[2].1) {
            (Tok::Ident(m), Tok::Ident(name), Tok::Other) if m == "mod" => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`): (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    // Inside a `pub use … ;` (until the next `;`, an `Other` token).
    let mut in_pub_use = false;
    let mut i = 0;
    while i < toks.len() {
        let before = out.len();
        let prev_is_path = matches!(toks.get(i.wrapping_sub(1)).map(|t| &t.1), Some(Tok::Path));
        match &toks[i].1 {
            Tok::Other => in_pub_use = false,
            Tok::Ident(u) if u == "use" => {
                // `pub use`, `pub(crate) use`: look back over `pub` and its parentheses.
                in_pub_use = toks[..i]
                    .iter()
                    .rev()
                    .take(5)
                    .any(|t| matches!(&t.1, Tok::Ident(p) if p == "pub"))
                    && !toks[..i]
                        .iter()
                        .rev()
                        .take_while(|t| !matches!(&t.1, Tok::Ident(p) if p == "pub"))
                        .any(|t| matches!(&t.1, Tok::Open | Tok::Close));
            }
            Tok::Ident(c)
                if children.contains(c.as_str())
                    && !prev_is_path
                    && inline.is_empty()
                    && toks.get(i + 1).is_some_and(|t| t.1 == Tok::Path) =>
            {
                let mut base = file.module.clone();
                base.push(c.clone());
                let line = toks[i].0;
                i = path_rest(&toks, i + 2, base, line, &mut out);
                for r in &mut out[before..] {
                    r.reexport = in_pub_use;
                }
                continue;
            }
            _ => {}
        }
        match &toks[i].1 {
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(m) if m == "mod" => {
                if let (Some((_, Tok::Ident(name))), Some((_, Tok::Open))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
            }
            Tok::Ident(k)
                if (k == "crate" || k == "super")
                    && toks.get(i + 1).is_some_and(|t| t.1 == Tok::Path)
                    && !matches!(toks.get(i.wrapping_sub(1)).map(|t| &t.1), Some(Tok::Path)) =>
            {
                let mut here = file.module.clone();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let line = toks[i].0;
                let mut base: Vec<String> = if k == "crate" { vec![] } else { here.clone() };
                let mut j = i;
                // super::super::…
                if k == "super" {
                    base.pop();
                    j += 2;
                    while matches!(toks.get(j).map(|t| &t.1), Some(Tok::Ident(s)) if s == "super")
                        && toks.get(j + 1).is_some_and(|t| t.1 == Tok::Path)
                    {
                        base.pop();
                        j += 2;
                    }
                } else {
                    j += 2;
                }
                i = path_rest(&toks, j, base, line, &mut out);
                for r in &mut out[before..] {
                    r.reexport = in_pub_use;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads `a::b::{c, d::e}` from `toks[j]` on, after `base`; pushes each
/// resolved path and returns the index after it.
fn path_rest(
    toks: &[(usize, Tok)],
    mut j: usize,
    mut base: Vec<String>,
    line: usize,
    out: &mut Vec<Ref>,
) -> usize {
    loop {
        match toks.get(j).map(|t| &t.1) {
            Some(Tok::Ident(s)) => {
                if s != "self" {
                    base.push(s.clone());
                }
                j += 1;
                if toks.get(j).is_some_and(|t| t.1 == Tok::Path) {
                    j += 1;
                    continue;
                }
                out.push(Ref {
                    line,
                    target: base,
                    reexport: false,
                });
                return j;
            }
            Some(Tok::Open) => {
                // A use group: each item is a path relative to `base`.
                j += 1;
                loop {
                    match toks.get(j).map(|t| &t.1) {
                        Some(Tok::Close) => return j + 1,
                        Some(Tok::Comma) => j += 1,
                        Some(Tok::Star) => {
                            out.push(Ref {
                                line: toks[j].0,
                                target: base.clone(),
                                reexport: false,
                            });
                            j += 1;
                        }
                        Some(Tok::Ident(_)) | Some(Tok::Open) => {
                            j = path_rest(toks, j, base.clone(), toks[j].0, out);
                            // `x as y`
                            while let Some((_, Tok::Ident(_))) = toks.get(j) {
                                j += 1;
                            }
                        }
                        None => return j,
                        _ => j += 1,
                    }
                }
            }
            Some(Tok::Star) => {
                out.push(Ref {
                    line,
                    target: base,
                    reexport: false,
                });
                return j + 1;
            }
            _ => {
                out.push(Ref {
                    line,
                    target: base,
                    reexport: false,
                });
                return j;
            }
        }
    }
}

/// An upward edge: `src/a.rs:12 imports crate::b::C (layer 8 migration above 3 sim)`.
fn check_layers(files: &[SourceFile], layers: &[Layer]) -> Result<Vec<String>, String> {
    let mut rank: BTreeMap<&str, &Layer> = BTreeMap::new();
    for l in layers {
        for m in &l.modules {
            if let Some(other) = rank.insert(m, l) {
                return Err(format!(
                    "module {m} is in two layers: {} and {}",
                    other.name, l.name
                ));
            }
        }
    }
    let top = layers.last().expect("parse_layers gives at least one");
    let layer_of = |file: &SourceFile, m: &str| -> Result<&Layer, String> {
        if m == "main" && file.path == "src/main.rs" {
            return Ok(top);
        }
        rank.get(m).copied().ok_or_else(|| {
            format!(
                "module {m} (from {}) is in no layer of src/lib.rs",
                file.path
            )
        })
    };
    let mut bad = Vec::new();
    for f in files {
        let Some(own) = f.module.first() else {
            continue; // lib.rs declares the modules
        };
        let own = if f.path == "src/main.rs" {
            top
        } else {
            layer_of(f, own)?
        };
        for r in refs(f) {
            let Some(target) = r.target.first() else {
                continue;
            };
            let theirs = layer_of(f, target)?;
            if theirs.rank > own.rank {
                bad.push(format!(
                    "{}:{} imports crate::{} (layer {} {} above {} {})",
                    f.path,
                    r.line,
                    r.target.join("::"),
                    theirs.rank,
                    theirs.name,
                    own.rank,
                    own.name
                ));
            }
        }
    }
    Ok(bad)
}

/// Import circles between files: the strongly connected components of more
/// than one file. A `pub use` (a module's facade re-exporting its
/// submodules' items) is not an import edge; every other path is.
fn circles(files: &[SourceFile]) -> (usize, Vec<Vec<String>>) {
    let by_module: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for (i, f) in files.iter().enumerate() {
        for r in refs(f).into_iter().filter(|r| !r.reexport) {
            // The longest module path that is a file.
            let Some(j) = (0..=r.target.len())
                .rev()
                .find_map(|k| by_module.get(&r.target[..k]).copied())
            else {
                continue;
            };
            if j != i {
                edges[i].insert(j);
            }
        }
    }
    let n_edges = edges.iter().map(BTreeSet::len).sum();
    // Tarjan's algorithm.
    struct T<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in t.edges[v].iter() {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        edges: &edges,
        index: vec![None; files.len()],
        low: vec![0; files.len()],
        on: vec![false; files.len()],
        stack: vec![],
        next: 0,
        out: vec![],
    };
    for v in 0..files.len() {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    let mut named: Vec<Vec<String>> = t
        .out
        .into_iter()
        .map(|scc| {
            let mut v: Vec<String> = scc.into_iter().map(|i| files[i].path.clone()).collect();
            v.sort();
            v
        })
        .collect();
    named.sort();
    (n_edges, named)
}

fn src_dir() -> PathBuf {
    std::env::var_os("XENTINEL_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn layers_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&src);
    let lib = &files
        .iter()
        .find(|f| f.path == "src/lib.rs")
        .expect("src/lib.rs")
        .text;
    let layers = parse_layers(lib).unwrap_or_else(|e| panic!("{e}"));
    // The table names exactly the modules lib.rs declares.
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    let tabled: BTreeSet<String> = layers.iter().flat_map(|l| l.modules.clone()).collect();
    assert_eq!(
        declared, tabled,
        "the layer table of src/lib.rs and its `pub mod` lines disagree"
    );
    let bad = check_layers(&files, &layers).unwrap_or_else(|e| panic!("{e}"));
    let n_refs: usize = files.iter().map(|f| refs(f).len()).sum();
    println!(
        "layers: {} layers, {} files, {} paths into the crate, {} upward",
        layers.len(),
        files.len(),
        n_refs,
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "imports from a higher layer (the table is in src/lib.rs):\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let files = read_tree(&src_dir());
    let (n_edges, found) = circles(&files);
    println!(
        "circles: {} files, {} import edges between them, {} import circle(s)",
        files.len(),
        n_edges,
        found.len()
    );
    for c in &found {
        println!("  circle of {}: {}", c.len(), c.join(", "));
    }
    assert!(found.is_empty(), "import circles: {found:#?}");
}

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: path.into(),
        module: module_of(path),
        text: text.into(),
    }
}

const TABLE: &str = "\
//! | rank | layer | modules |
//! |---|---|---|
//! | 1 | base | `snapshot`, `guest` |
//! | 2 | sim | `sim` |
//! | 3 | roles | `roles` |
";

/// The checker itself: planted upward edges of every kind are caught and
/// named; downward ones, comments and strings are not.
#[test]
fn the_checker_catches_a_planted_upward_edge() {
    let layers = parse_layers(TABLE).unwrap();
    assert_eq!(layers[1].modules, ["sim"]);
    let files = [
        file(
            "src/sim/shared.rs",
            "//! Mentions crate::roles in a comment.\n\
             use crate::snapshot::Snapshot;\n\
             use crate::{guest, roles::demo};\n\
             pub use crate::roles::Thing;\n\
             const S: &str = \"crate::roles::x\";\n\
             fn f() { let _ = crate::roles::demo::run(); let c = 'x'; }\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::super::roles::X;\n}\n",
        ),
        file(
            "src/sim/cluster/migrate.rs",
            "use super::super::super::roles::Y;\nuse super::Cluster;\n",
        ),
        file("src/roles/demo.rs", "use crate::sim::Cluster;\n"),
    ];
    let bad = check_layers(&files, &layers).unwrap();
    assert_eq!(
        bad,
        [
            "src/sim/shared.rs:3 imports crate::roles::demo (layer 3 roles above 2 sim)",
            "src/sim/shared.rs:4 imports crate::roles::Thing (layer 3 roles above 2 sim)",
            "src/sim/shared.rs:6 imports crate::roles::demo::run (layer 3 roles above 2 sim)",
            "src/sim/shared.rs:10 imports crate::roles::X (layer 3 roles above 2 sim)",
            "src/sim/cluster/migrate.rs:1 imports crate::roles::Y (layer 3 roles above 2 sim)",
        ]
    );
    // A module missing from the table is an error, not a pass.
    let stray = [file("src/stray.rs", "use crate::sim::X;\n")];
    assert!(
        check_layers(&stray, &layers)
            .unwrap_err()
            .contains("module stray")
    );
}

#[test]
fn the_checker_finds_circles_but_not_a_facade() {
    let files = [
        file(
            "src/sim/mod.rs",
            "mod cluster;\nmod shared;\npub use cluster::Cluster;\npub use crate::sim::spec::S;\nfn f() { shared::go(); }\n",
        ),
        file(
            "src/sim/cluster.rs",
            "use super::SimError;\nuse crate::sim::spec::S;\n",
        ),
        file("src/sim/shared.rs", "use super::SimError;\n"),
        file("src/sim/spec.rs", "use super::formulas::F;\n"),
        file("src/sim/formulas.rs", "use crate::sim::spec::Workload;\n"),
    ];
    let (_, found) = circles(&files);
    assert_eq!(
        found,
        [
            vec!["src/sim/formulas.rs", "src/sim/spec.rs"],
            vec!["src/sim/mod.rs", "src/sim/shared.rs"],
        ]
    );
}
