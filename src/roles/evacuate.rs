//! `xentinel evacuate --host H`: one evacuation from the command line, with
//! the webhook's planner, executor and job log. On a terminal it draws a
//! progress bar per domain (plain ANSI); otherwise it prints JSON lines.

use std::io::{IsTerminal, Write};

use tokio::sync::mpsc;

use clap::Args;

use crate::migration;
use crate::migration::alert::format_rfc3339;
use crate::migration::executor::safe_name;
use crate::migration::joblog::{NewJob, now};
use crate::migration::runner::Event;

use super::webhook::MigrationArgs;

/// Flags of `xentinel evacuate`.
#[derive(Debug, Args)]
pub struct EvacuateArgs {
    /// The host to empty.
    #[arg(long = "host")]
    pub host: String,

    /// Only these targets (repeat the flag); warned, down and unreachable hosts are never used.
    #[arg(long = "to")]
    pub to: Vec<String>,

    #[command(flatten)]
    pub migration: MigrationArgs,
}

/// Runs the evacuation; an error when it did not end `done` (or `planned` for a dry run).
pub async fn run(a: EvacuateArgs) -> anyhow::Result<()> {
    let cfg = crate::config::load(a.migration.config_file.as_deref())?.webhook;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let engine = migration::engine(&a.migration.options(), &cfg, Some(tx))?;
    anyhow::ensure!(safe_name(&a.host), "refusing the host name {:?}", a.host);
    match migration::known_hosts(&cfg, &engine.inventory).list().await {
        Ok(known) => {
            for h in std::iter::once(&a.host).chain(&a.to) {
                anyhow::ensure!(
                    known.contains(h),
                    "unknown host {h:?} (known hosts: {})",
                    known.join(", ")
                );
            }
        }
        // The runner waits (with backoff, visibly) until the inventory answers.
        Err(e) => log::warn!("cannot check the host names yet: {e}"),
    }
    let t = now();
    let job = NewJob {
        fingerprint: format!("cli:{}:{}:{}", a.host, std::process::id(), t),
        starts_at: format_rfc3339(t),
        starts_at_unix: t,
        host: a.host.clone(),
        origin: "cli".into(),
        dry_run: a.migration.dry_run,
    };
    let id = engine
        .db(|l| l.insert_job(&job))?
        .ok_or_else(|| anyhow::anyhow!("a job with this identity exists already"))?;
    let only = (!a.to.is_empty()).then(|| a.to.clone());
    let runner = tokio::spawn(engine.clone().run_job(id, only));
    let tty = std::io::stdout().is_terminal();
    if tty && log::max_level() == log::LevelFilter::Info {
        // Info lines would scroll through the bars; the bars say the same.
        log::set_max_level(log::LevelFilter::Warn);
    }
    let mut view = Display::new(tty);
    while let Some(e) = rx.recv().await {
        let last = matches!(e, Event::Finished { .. });
        view.show(&e);
        if last {
            break;
        }
    }
    let state = runner.await?;
    match state.as_str() {
        "done" | "planned" => Ok(()),
        s => anyhow::bail!(
            "evacuation of {} ended {s} (job {id} in {})",
            a.host,
            a.migration.db_path.display()
        ),
    }
}

struct Line {
    domain: String,
    target: String,
    state: String,
    progress: f64,
    reason: String,
}

/// Renders events: redrawn bars on a terminal, JSON lines elsewhere.
struct Display {
    tty: bool,
    lines: Vec<Line>,
    drawn: usize,
}

impl Display {
    fn new(tty: bool) -> Self {
        Display {
            tty,
            lines: Vec::new(),
            drawn: 0,
        }
    }

    fn show(&mut self, e: &Event) {
        let mut out = std::io::stdout().lock();
        if !self.tty {
            let _ = writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default());
            return;
        }
        match e {
            Event::Waiting { reason, .. } => {
                let _ = writeln!(out, "waiting: {reason}");
            }
            Event::Planned { job, source, steps } => {
                let _ = writeln!(
                    out,
                    "job {job}: evacuating {source}: {} domain(s)",
                    steps.len()
                );
                self.lines = steps
                    .iter()
                    .map(|s| Line {
                        domain: s.domain.clone(),
                        target: s.target.clone().unwrap_or_else(|| "-".into()),
                        state: if s.target.is_some() {
                            "planned"
                        } else {
                            "failed"
                        }
                        .into(),
                        progress: 0.0,
                        reason: s.reason.clone().unwrap_or_default(),
                    })
                    .collect();
                self.drawn = 0;
                self.redraw(&mut out);
            }
            Event::Step {
                domain,
                state,
                progress,
                reason,
                ..
            } => {
                if let Some(l) = self.lines.iter_mut().find(|l| &l.domain == domain) {
                    l.state = state.clone();
                    l.progress = *progress;
                    if !reason.is_empty() {
                        l.reason = reason.clone();
                    }
                }
                self.redraw(&mut out);
            }
            Event::Finished { job, state, reason } => {
                let _ = writeln!(out, "job {job}: {state} ({reason})");
            }
        }
    }

    fn redraw(&mut self, out: &mut impl Write) {
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        let name_w = self.lines.iter().map(|l| l.domain.len()).max().unwrap_or(6);
        for l in &self.lines {
            let filled = (l.progress.clamp(0.0, 1.0) * 30.0).round() as usize;
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(30 - filled));
            let _ = writeln!(
                out,
                "\r\x1b[2K  {:<name_w$} -> {:<8} [{bar}] {:>3.0}% {:<9} {}",
                l.domain,
                l.target,
                l.progress * 100.0,
                l.state,
                l.reason
            );
        }
        self.drawn = self.lines.len();
        let _ = out.flush();
    }
}
