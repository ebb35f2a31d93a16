//! Executors: what actually moves a domain. [`Executor::Command`] runs an
//! argv template (default `xl migrate {domain} {target}`) as a child process,
//! never through a shell, with a timeout; [`Executor::Sim`] drives the
//! modelled cluster in-process.
//!
//! Children run in their own process group with stderr going to a file beside
//! the job log, so a signal to xentinel's group (a terminal's Ctrl-C) does not
//! reach them and an interrupted xentinel (SIGKILL) leaves an `xl migrate` in
//! flight to finish rather than die of SIGPIPE; recovery waits for it (by pid
//! and start time) and then asks [`Executor::is_on`] where the domain is.
//! After a failed migration [`Executor::state`] tells how the domain is on its
//! source (running, paused, shut down, crashed, gone) and [`Executor::resume`]
//! brings back one left paused.
//!
//! Child processes (short commands, process groups, `/proc`) are in
//! `process`; reading `xl list`'s state column in `state`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::sim::{MigrationId, MigrationState, SharedCluster};

mod process;
mod state;

pub use process::{
    STDERR_TAIL, kill_group, kill_pid, proc_start_time, stderr_holders, stderr_path, still_running,
    take_tail,
};
pub use state::{SourceState, parse_state};

use process::{first_line, prog, run_short};

/// Runs migrations.
#[derive(Clone)]
pub enum Executor {
    /// The modelled cluster, in this process.
    Sim {
        cluster: SharedCluster,
        timeout: Duration,
    },
    /// An external command per migration.
    Command(CommandExecutor),
}

/// The argv templates and limits of [`Executor::Command`].
#[derive(Debug, Clone)]
pub struct CommandExecutor {
    /// Placeholders `{domain}`, `{source}`, `{target}`, each replaced inside one argv element.
    pub command: Vec<String>,
    /// Placeholders `{domain}`, `{host}` (the host asked about); exit 0 = the domain is there.
    pub locate: Vec<String>,
    /// Placeholders `{domain}`, `{host}`: prints the domain's `xl list` line (see [`parse_state`]).
    pub state: Vec<String>,
    /// Placeholders `{domain}`, `{host}`: unpauses the domain.
    pub resume: Vec<String>,
    pub timeout: Duration,
    /// Where children's stderr goes while they run.
    pub state_dir: PathBuf,
}

/// What one migration needs.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub id: i64,
    pub domain: String,
    pub source: String,
    pub target: String,
    pub memory_bytes: u64,
}

/// How a migration ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub ok: bool,
    pub reason: String,
    /// Seconds; the sim reports the model's, commands the wall clock.
    pub duration: Option<f64>,
    pub downtime: Option<f64>,
    pub stderr_tail: String,
    /// Killed at the executor's timeout.
    pub timed_out: bool,
}

/// A migration in flight.
pub enum Started {
    Sim {
        cluster: SharedCluster,
        id: MigrationId,
        timeout: Duration,
    },
    Child(Box<ChildRun>),
}

/// A migration child process.
pub struct ChildRun {
    child: tokio::process::Child,
    pid: u32,
    pid_start: String,
    stderr_path: PathBuf,
    timeout: Duration,
    t0: Instant,
}

/// Replaces `{key}` placeholders inside each element; each stays one argv element.
pub fn expand(template: &[String], vars: &[(&str, &str)]) -> Vec<String> {
    template
        .iter()
        .map(|a| {
            vars.iter()
                .fold(a.clone(), |acc, (k, v)| acc.replace(&format!("{{{k}}}"), v))
        })
        .collect()
}

/// A name safe to hand to a command (also through ssh's remote shell):
/// letters, digits and `._-:@+`, not starting with `-`.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:@+".contains(&b))
}

impl Executor {
    /// True when `domain` runs on `host` now.
    pub async fn is_on(&self, domain: &str, host: &str) -> Result<bool, String> {
        match self {
            Executor::Sim { cluster, .. } => {
                let c = cluster.lock().unwrap_or_else(|e| e.into_inner());
                Ok(c.domain(domain).is_some_and(|d| d.host == host))
            }
            Executor::Command(c) => {
                let argv = expand(&c.locate, &[("domain", domain), ("host", host)]);
                let mut cmd = tokio::process::Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .kill_on_drop(true);
                let st = tokio::time::timeout(Duration::from_secs(30), cmd.status())
                    .await
                    .map_err(|_| format!("locate {argv:?} timed out"))?
                    .map_err(|e| format!("cannot run locate {argv:?}: {e}"))?;
                Ok(st.success())
            }
        }
    }

    /// How `domain` is on `host` now, with what showed it (the state flags or
    /// the state command's message). A state command exiting non-zero means gone.
    pub async fn state(&self, domain: &str, host: &str) -> Result<(SourceState, String), String> {
        match self {
            Executor::Sim { cluster, .. } => {
                use crate::snapshot::DomainState as M;
                let c = cluster.lock().unwrap_or_else(|e| e.into_inner());
                Ok(match c.domain(domain).filter(|d| d.host == host) {
                    None => (SourceState::Gone, format!("not in the sim on {host}")),
                    Some(d) => {
                        let s = match d.state {
                            M::Paused => SourceState::Paused,
                            M::Crashed => SourceState::Crashed,
                            M::Shutdown => SourceState::Shutdown,
                            M::Dying => SourceState::Gone,
                            _ => SourceState::Running,
                        };
                        (s, format!("sim state {}", d.state.as_str()))
                    }
                })
            }
            Executor::Command(c) => {
                let argv = expand(&c.state, &[("domain", domain), ("host", host)]);
                match run_short(&argv).await? {
                    (Some(0), out, _) => parse_state(&out).ok_or_else(|| {
                        format!(
                            "no state column in the output of {argv:?}: {:?}",
                            first_line(&out)
                        )
                    }),
                    (code, out, err) => {
                        let msg = first_line(if err.trim().is_empty() { &out } else { &err });
                        let how = code.map_or("was killed".into(), |c| format!("exited {c}"));
                        Ok((SourceState::Gone, format!("{} {how}: {msg}", prog(&argv))))
                    }
                }
            }
        }
    }

    /// Unpauses `domain` on `host`.
    pub async fn resume(&self, domain: &str, host: &str) -> Result<(), String> {
        match self {
            Executor::Sim { .. } => Err("the sim cannot resume a domain".into()),
            Executor::Command(c) => {
                let argv = expand(&c.resume, &[("domain", domain), ("host", host)]);
                match run_short(&argv).await? {
                    (Some(0), _, _) => Ok(()),
                    (code, out, err) => Err(format!(
                        "{} {}: {}",
                        prog(&argv),
                        code.map_or("was killed".into(), |c| format!("exited {c}")),
                        first_line(if err.trim().is_empty() { &out } else { &err })
                    )),
                }
            }
        }
    }

    /// True when the locate template can ask about any host (it names `{host}`),
    /// not only the one it runs on.
    pub fn locates_any_host(&self) -> bool {
        match self {
            Executor::Sim { .. } => true,
            Executor::Command(c) => c.locate.iter().any(|a| a.contains("{host}")),
        }
    }

    /// The timeout of one migration.
    pub fn timeout(&self) -> Duration {
        match self {
            Executor::Sim { timeout, .. } => *timeout,
            Executor::Command(c) => c.timeout,
        }
    }

    /// Starts migrating; an error is a reason for a failed step.
    pub async fn start(&self, s: &StepSpec) -> Result<Started, String> {
        match self {
            Executor::Sim { cluster, timeout } => {
                let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
                let id = c
                    .start_migration(&s.domain, &s.target)
                    .map_err(|e| format!("the sim refused: {e}"))?;
                Ok(Started::Sim {
                    cluster: cluster.clone(),
                    id,
                    timeout: *timeout,
                })
            }
            Executor::Command(c) => {
                let argv = expand(
                    &c.command,
                    &[
                        ("domain", &s.domain),
                        ("source", &s.source),
                        ("target", &s.target),
                    ],
                );
                std::fs::create_dir_all(&c.state_dir)
                    .map_err(|e| format!("cannot create {}: {e}", c.state_dir.display()))?;
                let stderr_path = stderr_path(&c.state_dir, s.id);
                let f = std::fs::File::create(&stderr_path)
                    .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
                let mut cmd = tokio::process::Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(f)
                    .process_group(0)
                    .kill_on_drop(true);
                let child = cmd
                    .spawn()
                    .map_err(|e| format!("cannot run {argv:?}: {e}"))?;
                let pid = child.id().unwrap_or(0);
                Ok(Started::Child(Box::new(ChildRun {
                    child,
                    pid,
                    pid_start: proc_start_time(pid).unwrap_or_default(),
                    stderr_path,
                    timeout: c.timeout,
                    t0: Instant::now(),
                })))
            }
        }
    }
}

impl Started {
    /// The child's pid and start time (to recognise it after a restart).
    pub fn pid(&self) -> Option<(u32, String)> {
        match self {
            Started::Sim { .. } => None,
            Started::Child(c) => Some((c.pid, c.pid_start.clone())),
        }
    }

    /// Waits for the end; `progress` gets the fraction sent when known.
    pub async fn wait(self, progress: impl Fn(f64)) -> Outcome {
        match self {
            Started::Sim {
                cluster,
                id,
                timeout,
            } => {
                let t0 = Instant::now();
                loop {
                    let st = {
                        let c = cluster.lock().unwrap_or_else(|e| e.into_inner());
                        let mem = c
                            .migration(id)
                            .and_then(|m| c.domain(&m.domain).map(|d| d.memory_bytes));
                        c.migration(id).map(|m| (m.state, mem.unwrap_or(1)))
                    };
                    match st {
                        None => return fail("the sim lost the migration".into(), ""),
                        Some((MigrationState::Done { duration, downtime }, _)) => {
                            return Outcome {
                                ok: true,
                                reason: String::new(),
                                duration: Some(duration.as_secs_f64()),
                                downtime: Some(downtime.as_secs_f64()),
                                ..Default::default()
                            };
                        }
                        Some((MigrationState::Failed(r), _)) => return fail(r, ""),
                        Some((
                            MigrationState::Running {
                                round,
                                remaining_bytes,
                                ..
                            },
                            mem,
                        )) => {
                            let f = 1.0 - remaining_bytes as f64 / mem.max(1) as f64;
                            progress(if round == 0 { f * 0.9 } else { 0.9 + f * 0.1 });
                        }
                    }
                    if t0.elapsed() > timeout {
                        return Outcome {
                            timed_out: true,
                            ..fail(
                                format!("timed out after {timeout:?} (the sim migration goes on)"),
                                "",
                            )
                        };
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Started::Child(c) => {
                let ChildRun {
                    mut child,
                    pid,
                    stderr_path,
                    timeout,
                    t0,
                    ..
                } = *c;
                let res = tokio::time::timeout(timeout, child.wait()).await;
                let out = match res {
                    Ok(Ok(st)) if st.success() => Outcome {
                        ok: true,
                        duration: Some(t0.elapsed().as_secs_f64()),
                        ..Default::default()
                    },
                    Ok(Ok(st)) => Outcome {
                        reason: match st.code() {
                            Some(c) => format!("exited with status {c}"),
                            None => format!("killed by a signal ({st})"),
                        },
                        duration: Some(t0.elapsed().as_secs_f64()),
                        ..Default::default()
                    },
                    Ok(Err(e)) => Outcome {
                        reason: format!("cannot wait for the child: {e}"),
                        ..Default::default()
                    },
                    Err(_) => {
                        kill_group(pid).await;
                        let _ = child.kill().await;
                        Outcome {
                            reason: format!("timed out after {timeout:?}; killed"),
                            duration: Some(t0.elapsed().as_secs_f64()),
                            timed_out: true,
                            ..Default::default()
                        }
                    }
                };
                Outcome {
                    stderr_tail: take_tail(&stderr_path),
                    ..out
                }
            }
        }
    }
}

fn fail(reason: String, tail: &str) -> Outcome {
    Outcome {
        reason,
        stderr_tail: tail.into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_inside_single_elements() {
        let t: Vec<String> = [
            "ssh",
            "root@{source}",
            "xl",
            "migrate",
            "{domain}",
            "{target}",
        ]
        .map(String::from)
        .to_vec();
        let argv = expand(
            &t,
            &[
                ("domain", "a b; rm"),
                ("source", "xen1"),
                ("target", "xen2"),
            ],
        );
        assert_eq!(
            argv,
            ["ssh", "root@xen1", "xl", "migrate", "a b; rm", "xen2"]
        );
    }

    #[test]
    fn xl_list_state_columns_are_read() {
        // `xl list tinypvh` on Xen 4.17 (tab-separated header, as xl prints it)
        let line = |flags: &str| {
            format!(
                "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
                 tinypvh                                      2   192     1     {flags}       3.1\n"
            )
        };
        for (flags, want) in [
            ("r-----", SourceState::Running),
            ("-b----", SourceState::Running),
            ("------", SourceState::Running),
            ("--p---", SourceState::Paused),
            ("---s--", SourceState::Shutdown),
            ("--ps--", SourceState::Shutdown),
            ("---sc-", SourceState::Crashed),
            ("----c-", SourceState::Crashed),
            ("-----d", SourceState::Gone),
            ("---scd", SourceState::Gone),
        ] {
            assert_eq!(parse_state(&line(flags)), Some((want, flags.to_string())));
        }
        assert_eq!(parse_state("Name ID Mem VCPUs State Time(s)\n"), None);
        assert_eq!(
            parse_state("r----- 1 2\n"),
            None,
            "a domain named like flags"
        );
        assert_eq!(parse_state("x r-x--- 1\n"), None, "not a flag at its place");
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(safe_name("web-1.example_2"));
        for bad in ["", "h1; touch /tmp/x", "-rf", "a b", "$(x)", "a`b`", "a\nb"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn children_are_found_by_their_stderr_file() {
        let dir = std::env::temp_dir().join(format!("xentinel-holders-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = stderr_path(&dir, 7);
        let f = std::fs::File::create(&p).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .stderr(f)
            .spawn()
            .unwrap();
        assert_eq!(stderr_holders(&p), [child.id()]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(stderr_holders(&p).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id();
        let s = proc_start_time(me).unwrap();
        assert!(still_running(me, &s));
        assert!(!still_running(me, "0"));
    }
}
