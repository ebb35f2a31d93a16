//! The Dockerfile builds from the repository as it is, checked without a container engine: the
//! builder stage is replayed in a temp dir. Its COPY lines copy from the build context (the
//! repository less `.dockerignore`), its WORKDIR lines move, its RUN lines run in `sh` (each part
//! of an `&&` chain), except `cargo ...`, which runs offline with its own target dir until cargo
//! has accepted the manifest, the lock file and every target and started compiling; then it is
//! stopped. Before each cargo step every `include_str!`/`include_bytes!` of the sources must
//! resolve inside the assembled tree (src/ compiles in files from prometheus/).
//!
//! It fails on the Dockerfile issue 12 found ("can't find `scrape` bench"), shown below.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::dashboards::repo_root;
use support::webhook::temp_dir;

/// One instruction of a Dockerfile: keyword (upper case) and its arguments.
#[derive(Debug)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

/// Instructions of a Dockerfile: continuation lines joined, comments and blank lines dropped.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (line, mut acc) = current.take().unwrap_or((n + 1, String::new()));
        if let Some(head) = trimmed.strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            current = Some((line, acc));
            continue;
        }
        acc.push_str(trimmed);
        let (keyword, args) = acc.split_once(char::is_whitespace).unwrap_or((&acc, ""));
        out.push(Instruction {
            line,
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
    }
    out
}

/// `.dockerignore` patterns, in order: (exclude = true, or `!` re-include = false; pattern).
fn parse_dockerignore(text: &str) -> Vec<(bool, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.strip_prefix('!') {
            Some(p) => (false, p.trim().trim_start_matches('/').to_owned()),
            None => (true, l.trim_start_matches('/').to_owned()),
        })
        .collect()
}

/// Docker's pattern match on a context-relative path: `*` and `?` stay within a path segment,
/// `**` spans segments (`**/` also matches no directory at all).
fn glob(pattern: &[u8], path: &[u8]) -> bool {
    match pattern {
        [] => path.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            glob(rest, path)
                || (0..path.len()).any(|i| path[i] == b'/' && glob(rest, &path[i + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|i| glob(rest, &path[i..])),
        [b'*', rest @ ..] => (0..=path.len())
            .take_while(|&i| i == 0 || path[i - 1] != b'/')
            .any(|i| glob(rest, &path[i..])),
        [b'?', rest @ ..] => !path.is_empty() && path[0] != b'/' && glob(rest, &path[1..]),
        [c, rest @ ..] => !path.is_empty() && path[0] == *c && glob(rest, &path[1..]),
    }
}

/// Whether `.dockerignore` leaves `rel` out of the context: the last pattern that matches the
/// path or one of its parent directories decides.
fn ignored(patterns: &[(bool, String)], rel: &str) -> bool {
    let mut prefixes = vec![rel];
    let mut at = rel.len();
    while let Some(i) = rel[..at].rfind('/') {
        prefixes.push(&rel[..i]);
        at = i;
    }
    let mut out = false;
    for (exclude, pattern) in patterns {
        if prefixes
            .iter()
            .any(|p| glob(pattern.as_bytes(), p.as_bytes()))
        {
            out = *exclude;
        }
    }
    out
}

/// The build context: every file under `root` that `.dockerignore` lets in, relative paths.
fn context_files(root: &Path, patterns: &[(bool, String)]) -> Vec<String> {
    let reincludes = patterns.iter().any(|(exclude, _)| !exclude);
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let kind = entry.file_type().unwrap();
            let skip = ignored(patterns, &rel);
            if kind.is_dir() {
                if !skip || reincludes {
                    stack.push(rel);
                }
            } else if !skip {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The builder stage replayed in `work`: `Ok(log)` or `Err(what failed, with cargo's output)`.
fn replay(dockerfile: &str, context: &Path, work: &Path) -> Result<Vec<String>, String> {
    let ignore = std::fs::read_to_string(context.join(".dockerignore")).unwrap_or_default();
    let files = context_files(context, &parse_dockerignore(&ignore));
    let root = work.join("root");
    let target = work.join("target");
    let mut cwd = root.clone();
    std::fs::create_dir_all(&cwd).unwrap();
    let mut log = Vec::new();
    let mut stage = 0;
    for ins in parse_dockerfile(dockerfile) {
        let at = format!("Dockerfile:{} {} {}", ins.line, ins.keyword, ins.args);
        match ins.keyword.as_str() {
            "FROM" => {
                stage += 1;
                if stage > 1 {
                    break; // only the first stage builds; the others copy from it
                }
            }
            "WORKDIR" => {
                cwd = root.join(ins.args.trim_start_matches('/'));
                std::fs::create_dir_all(&cwd).unwrap();
            }
            "COPY" => copy(&ins.args, context, &files, &cwd).map_err(|e| format!("{at}: {e}"))?,
            "RUN" => {
                for part in ins.args.split("&&").map(str::trim) {
                    if let Some(args) = part.strip_prefix("cargo ") {
                        check_includes(&cwd).map_err(|e| format!("{at}: {e}"))?;
                        let first = cargo_starts(args, &cwd, &target)
                            .map_err(|e| format!("{at}: `{part}`: {e}"))?;
                        log.push(format!("{at}: `{part}` started: {first}"));
                    } else {
                        shell(part, &cwd).map_err(|e| format!("{at}: {e}"))?;
                    }
                }
            }
            other => {
                return Err(format!(
                    "{at}: the replay knows FROM, WORKDIR, COPY and RUN, not {other}: extend tests/docker_build.rs"
                ));
            }
        }
    }
    Ok(log)
}

/// `COPY <src>... <dest>` from the context (only files it lets in) into `cwd`-relative `dest`.
fn copy(args: &str, context: &Path, files: &[String], cwd: &Path) -> Result<(), String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    if words.iter().any(|w| w.starts_with("--"))
        || words.first().is_some_and(|w| w.starts_with('['))
    {
        return Err("flags and the JSON form of COPY are not replayed".into());
    }
    let (dest, sources) = words.split_last().ok_or("COPY without arguments")?;
    let dest_dir = dest.ends_with('/') || *dest == "." || sources.len() > 1;
    let dest = cwd.join(dest);
    for src in sources {
        let src = src.trim_start_matches("./").trim_end_matches('/');
        let src = if src == "." { "" } else { src };
        let under: Vec<&String> = files
            .iter()
            .filter(|f| src.is_empty() || f.starts_with(&format!("{src}/")))
            .collect();
        if files.iter().any(|f| f == src) {
            let to = if dest_dir {
                dest.join(Path::new(src).file_name().unwrap())
            } else {
                dest.clone()
            };
            copy_file(&context.join(src), &to);
        } else if !under.is_empty() {
            for f in under {
                let rel = if src.is_empty() {
                    &f[..]
                } else {
                    &f[src.len() + 1..]
                };
                copy_file(&context.join(f), &dest.join(rel));
            }
        } else {
            return Err(format!(
                "{src:?} is not in the build context (missing, or left out by .dockerignore)"
            ));
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}

/// One non-cargo part of a RUN line, in `sh`, inside the replayed tree only.
fn shell(part: &str, cwd: &Path) -> Result<(), String> {
    if part.contains(" /") || part.contains("..") || part.contains(';') || part.contains('|') {
        return Err(format!(
            "`{part}`: only relative paths and plain `&&` chains are replayed"
        ));
    }
    let out = Command::new("sh")
        .args(["-c", part])
        .current_dir(cwd)
        .output()
        .map_err(|e| format!("sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{part}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Every `include_str!`/`include_bytes!` with a literal path in the `.rs` files under
/// `cwd/src` names a file that is there.
fn check_includes(cwd: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut stack = vec![cwd.join("src")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for mac in ["include_str!(", "include_bytes!("] {
                for (at, _) in text.match_indices(mac) {
                    let rest = &text[at + mac.len()..];
                    let Some(lit) = rest.trim_start().strip_prefix('"') else {
                        return Err(format!(
                            "{}: a {mac}...) without a literal path is not checked",
                            path.display()
                        ));
                    };
                    let name = &lit[..lit.find('"').unwrap()];
                    if !path.parent().unwrap().join(name).is_file() {
                        let rel = path.strip_prefix(cwd).unwrap();
                        missing.push(format!("{} includes {name}", rel.display()));
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "files the sources compile in are not in the image's tree: {}",
            missing.join(", ")
        ))
    }
}

/// Runs `cargo <args> --offline` in `cwd` with its own target dir until its first `Compiling`
/// line (returned), then stops it. An exit before that is the error, with cargo's output.
fn cargo_starts(args: &str, cwd: &Path, target: &Path) -> Result<String, String> {
    let mut child = Command::new(env!("CARGO"))
        .args(args.split_whitespace())
        .arg("--offline")
        .env("CARGO_TARGET_DIR", target)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let result = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.trim_start().starts_with("Compiling ") => {
                break Ok(line.trim().to_owned());
            }
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                break Err(format!(
                    "cargo exited ({status}) before compiling anything:\n{}",
                    seen.join("\n")
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                break Err(format!(
                    "no `Compiling` line within 120 s:\n{}",
                    seen.join("\n")
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    // The whole group: cargo and the rustc processes it started.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    result
}

#[test]
fn the_image_builds_from_the_repository_as_it_is() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let work = temp_dir("docker-build");
    let log = replay(&dockerfile, &root, &work).unwrap_or_else(|e| panic!("{e}"));
    for line in &log {
        println!("{line}");
    }
    // The dependency layer and the final build both reached the compiler.
    assert_eq!(
        log.len(),
        2,
        "two cargo builds in the builder stage: {log:?}"
    );
    std::fs::remove_dir_all(&work).unwrap();
}

#[test]
fn the_context_leaves_out_only_what_dockerignore_names() {
    let root = repo_root();
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    let files = context_files(&root, &parse_dockerignore(&ignore));
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "benches/scrape.rs",
    ] {
        assert!(
            files.iter().any(|f| f == needed),
            "{needed} is not in the context"
        );
    }
    assert!(files.iter().any(|f| f.starts_with("prometheus/rules/")));
    for left_out in ["target/", ".git/"] {
        assert!(
            !files.iter().any(|f| f.starts_with(left_out)),
            "{left_out} is in the context"
        );
    }
}

#[test]
fn dockerignore_patterns_match_like_docker() {
    let p = parse_dockerignore("target\n*.profraw\n**/*.deb\ndocs/*\n!docs/keep.md\n# comment\n");
    for (path, out) in [
        ("target", true),
        ("target/release/xentinel", true),
        ("src/target.rs", false),
        ("x.profraw", true),
        ("src/x.profraw", false),
        ("a.deb", true),
        ("target2/debian/x.deb", true),
        ("docs/stack.md", true),
        ("docs/keep.md", false),
        ("Cargo.toml", false),
    ] {
        assert_eq!(ignored(&p, path), out, "{path}");
    }
}

/// The Dockerfile as issue 12 found it: only Cargo.toml, Cargo.lock and src/ in the context.
const DOCKERFILE_OF_ISSUE_12: &str = "\
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \\
    && cargo build --release --locked \\
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked
FROM gcr.io/distroless/cc-debian12:nonroot
";

#[test]
fn the_replay_fails_on_the_dockerfile_of_issue_12() {
    let work = temp_dir("docker-build-old");
    let err = replay(DOCKERFILE_OF_ISSUE_12, &repo_root(), &work).unwrap_err();
    println!("the Dockerfile of issue 12: {err}");
    assert!(
        err.contains("Dockerfile:4") && err.contains("can't find `scrape` bench"),
        "{err}"
    );
    // With the bench there, the next break: src/ compiles in prometheus/ files.
    let benches_only = DOCKERFILE_OF_ISSUE_12.replace(
        "COPY Cargo.toml Cargo.lock ./\n",
        "COPY Cargo.toml Cargo.lock ./\nCOPY benches ./benches\n",
    );
    let work2 = temp_dir("docker-build-old2");
    let err = replay(&benches_only, &repo_root(), &work2).unwrap_err();
    println!("with benches/ copied too: {err}");
    assert!(
        err.contains("Dockerfile:9") && err.contains("prometheus/rules/xentinel-alerts.yml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&work2);
}

/// The replayed tree is where the COPY lines put things, nothing from outside it.
#[test]
fn copy_follows_docker_semantics() {
    let work = temp_dir("docker-copy");
    let context = work.join("ctx");
    for f in ["a.toml", "dir/x.rs", "dir/sub/y.rs", "skip/z"] {
        std::fs::create_dir_all(context.join(f).parent().unwrap()).unwrap();
        std::fs::write(context.join(f), f).unwrap();
    }
    std::fs::write(context.join(".dockerignore"), "skip\n").unwrap();
    let dockerfile = "FROM x\nWORKDIR /w\nCOPY a.toml ./\nCOPY dir ./d\nCOPY . all\nRUN test -f d/sub/y.rs && test ! -e all/skip\n";
    replay(dockerfile, &context, &work.join("out")).unwrap();
    let tree = |p: &str| PathBuf::from(&work).join("out/root/w").join(p);
    assert!(tree("a.toml").is_file());
    assert!(tree("d/x.rs").is_file() && tree("d/sub/y.rs").is_file());
    assert!(tree("all/dir/sub/y.rs").is_file() && tree("all/.dockerignore").is_file());
    assert!(!tree("all/skip").exists());
    let err = replay("FROM x\nCOPY nope ./\n", &context, &work.join("out2")).unwrap_err();
    assert!(
        err.contains("\"nope\" is not in the build context"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
