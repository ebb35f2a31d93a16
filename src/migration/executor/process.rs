//! The executor's child processes: short commands with a timeout, process
//! groups killed whole, a step's stderr file and its tail, and `/proc` to
//! recognise a child after a restart (pid and start time).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Bytes of stderr kept in the job log.
pub const STDERR_TAIL: usize = 4096;

/// Runs a short command (never through a shell) with a 30 s timeout; returns
/// its exit code (`None`: killed by a signal), stdout and stderr. Like every
/// child it leads its own process group: a terminal's Ctrl-C or a signal to
/// xentinel's group reaches xentinel only, which decides what to stop.
pub(super) async fn run_short(argv: &[String]) -> Result<(Option<i32>, String, String), String> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| format!("{argv:?} timed out"))?
        .map_err(|e| format!("cannot run {argv:?}: {e}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(STDERR_TAIL)]).into_owned();
    Ok((out.status.code(), text(&out.stdout), text(&out.stderr)))
}

/// The program's file name, for a reason.
pub(super) fn prog(argv: &[String]) -> &str {
    let a = argv[0].as_str();
    a.rsplit('/').next().unwrap_or(a)
}

/// The first non-empty line of `s`, for a reason.
pub(super) fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Kills a child's whole process group (it was started as its leader).
pub async fn kill_group(pid: u32) {
    if pid == 0 {
        return;
    }
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Kills one process.
pub async fn kill_pid(pid: u32) {
    if pid == 0 {
        return;
    }
    let _ = tokio::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Reads the last [`STDERR_TAIL`] bytes of a step's stderr file and removes it.
pub fn take_tail(path: &Path) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    let _ = std::fs::remove_file(path);
    let start = data.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// A process' start time (field 22 of `/proc/<pid>/stat`), to tell it from a reused pid.
pub fn proc_start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

/// Pids of the live processes whose stderr is `path` (a step's children,
/// found even when xentinel died before recording their pid).
pub fn stderr_holders(path: &Path) -> Vec<u32> {
    let Ok(want) = std::fs::canonicalize(path) else {
        return vec![];
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/fd/2")).is_ok_and(|l| l == want)
                && proc_start_time(*pid).is_some()
        })
        .collect()
}

/// The stderr file of step `id` under `state_dir`.
pub fn stderr_path(state_dir: &Path, id: i64) -> PathBuf {
    state_dir.join(format!("step-{id}.stderr"))
}

/// True while the process that had `pid` and `start` is still running.
pub fn still_running(pid: u32, start: &str) -> bool {
    pid != 0 && proc_start_time(pid).is_some_and(|s| s == start)
}
