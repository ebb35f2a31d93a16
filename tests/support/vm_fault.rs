//! Tells the environment's faults from the product's in a run of real Xen under QEMU (TCG): reads
//! the VM's serial log and how QEMU ended, and names each fault of the emulated machine by its
//! evidence lines. A harness reruns a run with an environment fault (a bounded number of times);
//! evidence that a product process died (xentinel's exporter, webhook or guest agent) is kept
//! apart and never makes a run an environment fault.
//!
//! Environment faults: a guest that triple-faulted (it was not asked to crash), a Xen panic, a dom0
//! kernel oops or panic, QEMU dying or being killed at the harness's timeout, a boot that never
//! reached dom0's init, and another program in the VM (xl, wget, busybox...) dying of a signal in
//! a step it did not recover from (the fork flake under TCG).
//!
//! The serial log is read as `scripts/xen-vm/dom0-init.sh` prints it (`@@BEGIN name@@` ...
//! `@@END name rc= t0= t1= lines=@@` blocks, times in dom0's uptime); logs without blocks (two-host
//! runs) are read line by line. Each fault has the log offset from which the run can no longer
//! be trusted: blocks that ended before it were unaffected.

use std::fmt;

/// What kind of environment fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A domU triple-faulted (or Xen crashed it) under emulation.
    GuestCrash,
    /// The hypervisor panicked.
    XenCrash,
    /// Dom0's kernel oopsed or panicked (or Xen saw dom0 crash).
    Dom0Crash,
    /// QEMU died, or exited with an error, before dom0 finished.
    QemuDied,
    /// QEMU was killed at the harness's timeout.
    Timeout,
    /// The boot never reached dom0's init.
    NoDom0Init,
    /// A program other than xentinel died of a signal in a step that failed for it.
    ToolCrash,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::GuestCrash => "guest crash (emulation)",
            Kind::XenCrash => "Xen crash",
            Kind::Dom0Crash => "dom0 kernel crash",
            Kind::QemuDied => "QEMU died",
            Kind::Timeout => "QEMU killed at the timeout",
            Kind::NoDom0Init => "boot never reached dom0's init",
            Kind::ToolCrash => "a tool in the VM died of a signal",
        })
    }
}

/// One environment fault and its evidence.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// The log lines (or facts about QEMU's end) that show it.
    pub evidence: Vec<String>,
    /// Byte offset in the log from which the run is affected.
    pub at: usize,
}

/// How the VM ended: boot.sh's exit code (`timeout`'s 124, or 137 after its SIGKILL, when QEMU
/// was killed at the time limit; 128+N when QEMU died of signal N), or `None` for a log read
/// without a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmEnd {
    pub code: Option<i32>,
    pub secs: f64,
    /// The harness stopped QEMU after [`fatal_line`] showed that nothing more would come.
    pub stopped: bool,
}

/// A line after which a VM produces nothing more (Xen halted: it panicked, or dom0 crashed and
/// `noreboot` keeps the machine down): a harness may stop QEMU instead of waiting for its timeout.
pub fn fatal_line(log: &str) -> Option<&str> {
    log.lines().find(|l| {
        l.starts_with("(XEN)")
            && [
                "Hardware Dom0 crashed",
                "Panic on CPU",
                "Manual reset required",
            ]
            .iter()
            .any(|w| l.contains(w))
    })
}

/// What a harness's serial log looks like.
#[derive(Debug, Clone)]
pub struct Markers {
    /// Printed by dom0's init when it starts.
    pub init: &'static str,
    /// Printed by dom0's init as its last line.
    pub done: &'static str,
    /// Process names (the kernel's 15-character `comm`) of the product.
    pub product_names: &'static [&'static str],
    /// Lines (substrings) by which the harness reports a product process that died.
    pub product_lines: &'static [&'static str],
    /// Blocks holding dom0's kernel log (`dmesg`): kernel lines there are dom0's.
    pub dmesg_blocks: &'static [&'static str],
    /// Steps (name prefixes) that are one call to xentinel: QEMU killed at the timeout while dom0
    /// was in one of them is a product hang, not the environment's.
    pub product_steps: &'static [&'static str],
}

/// The markers of `scripts/xen-vm/dom0-init.sh`.
pub const XEN_VM: Markers = Markers {
    init: "@@XEN-VM dom0 init started@@",
    done: "@@DONE@@",
    product_names: &["xentinel"],
    product_lines: &["AGENT-EXIT", "exporter exited", "webhook exited"],
    dmesg_blocks: &["dmesg-tail", "dmesg-signals"],
    product_steps: &[
        "exporter-start",
        "scrape-",
        "webhook-start",
        "webhook-alert",
        "webhook-metrics",
    ],
};

/// The classifier's findings.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Environment faults, in log order.
    pub faults: Vec<Fault>,
    /// Evidence that the failure is not the environment's: a product process died or hung, or a
    /// step died of the same signal on every one of its re-runs (deterministic: a tool or harness
    /// bug). A run with any is never rerun.
    pub product: Vec<String>,
    /// Signs of the emulation the run recovered from (a step re-run in the VM): for the report.
    pub recovered: Vec<String>,
}

impl Verdict {
    /// Where the first environment fault makes the run untrustworthy.
    pub fn cutoff(&self) -> Option<usize> {
        self.faults.iter().map(|f| f.at).min()
    }

    /// True when the run may be rerun: an environment fault, and no product process died.
    pub fn environment(&self) -> bool {
        !self.faults.is_empty() && self.product.is_empty()
    }

    /// The kinds found, for a one-line summary.
    pub fn kinds(&self) -> String {
        let mut k: Vec<String> = self.faults.iter().map(|f| f.kind.to_string()).collect();
        k.dedup();
        k.join(", ")
    }
}

/// A block of dom0-init.sh's output: where it starts in the log and what its end marker says.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    begin: usize,
    end: usize,
    rc: Option<i32>,
    t0: f64,
    t1: f64,
    retries: u32,
    end_line: String,
}

/// Lines with their byte offsets (without `\r`).
fn lines(log: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut at = 0;
    for raw in log.split_inclusive('\n') {
        out.push((at, raw.trim_end_matches(['\n', '\r'])));
        at += raw.len();
    }
    out
}

fn spans(lines: &[(usize, &str)]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for &(at, l) in lines {
        if let Some(name) = l
            .strip_prefix("@@BEGIN ")
            .and_then(|r| r.strip_suffix("@@"))
        {
            open = Some((name.to_string(), at));
        } else if let Some(rest) = l.strip_prefix("@@END ").and_then(|r| r.strip_suffix("@@")) {
            let mut w = rest.split_whitespace();
            let name = w.next().unwrap_or_default();
            let kv: Vec<(&str, &str)> = w.filter_map(|x| x.split_once('=')).collect();
            let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
            if let Some((n, begin)) = open.take().filter(|(n, _)| n == name) {
                out.push(Span {
                    name: n,
                    begin,
                    end: at + l.len(),
                    rc: get("rc").and_then(|v| v.parse().ok()),
                    t0: num("t0").unwrap_or(0.0),
                    t1: num("t1").unwrap_or(0.0),
                    retries: num("retries").unwrap_or(0.0) as u32,
                    end_line: l.to_string(),
                });
            }
        }
    }
    out
}

/// `(XEN) d2v0 Triple fault ...` → Some(2) (also with Xen's `[ time]` console stamps).
fn xen_guest_line(l: &str) -> Option<u32> {
    let rest = l.strip_prefix("(XEN) ")?.trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']')?.1.trim_start(),
        None => rest,
    };
    let d = rest.strip_prefix('d')?;
    let (dom, v) = d.split_once('v')?;
    v.split_whitespace().next()?.parse::<u32>().ok()?;
    dom.parse().ok()
}

/// `[  123.456789] text` → (123.456789, text).
fn kernel_stamp(l: &str) -> Option<(f64, &str)> {
    let r = l.trim_start().strip_prefix('[')?;
    let (t, text) = r.split_once(']')?;
    Some((t.trim().parse().ok()?, text.trim_start()))
}

/// A kernel line about a user process dying of a signal → its name:
/// `xl[812]: segfault at 0 ip ...`, `traps: xl[812] general protection fault ip:...`,
/// `traps: wget[90] trap invalid opcode ip:...`.
fn signal_victim(text: &str) -> Option<&str> {
    let t = text.strip_prefix("traps: ").unwrap_or(text);
    let (name, rest) = t.split_once('[')?;
    let (_pid, rest) = rest.split_once(']')?;
    let rest = rest.trim_start_matches(':').trim_start();
    let died = rest.starts_with("segfault at")
        || rest.starts_with("general protection fault ip")
        || rest.starts_with("trap invalid opcode")
        || rest.starts_with("trap divide error")
        || rest.starts_with("trap stack segment");
    (died && !name.is_empty() && !name.contains(' ')).then_some(name)
}

/// Dom0's kernel (not a user process) oopsed or panicked.
fn kernel_crash(text: &str) -> bool {
    text.starts_with("Kernel panic - not syncing")
        || text.starts_with("BUG: unable to handle")
        || text.starts_with("kernel BUG at")
        || text.starts_with("Oops:")
        || (text.starts_with("general protection fault") && text.contains("[#"))
}

fn add(v: &mut Verdict, kind: Kind, evidence: Vec<String>, at: usize) {
    match v.faults.iter_mut().find(|f| f.kind == kind) {
        Some(f) => {
            f.evidence.extend(evidence);
            f.at = f.at.min(at);
        }
        None => v.faults.push(Fault { kind, evidence, at }),
    }
}

/// Reads one VM run. `end` is how QEMU ended (None: a log checked without a run).
pub fn classify(log: &str, end: Option<VmEnd>, m: &Markers) -> Verdict {
    let lines = lines(log);
    let spans = spans(&lines);
    let block_at = |at: usize| spans.iter().find(|s| s.begin <= at && at <= s.end);
    let mut v = Verdict::default();
    // Kernel lines in dmesg blocks come at the end of the log: place them by their time.
    let place = |t: f64| {
        spans
            .iter()
            .find(|s| s.t1 >= t && s.rc.is_some())
            .map_or(log.len(), |s| s.begin)
    };
    let mut qemu_lines = Vec::new();
    for (i, &(at, l)) in lines.iter().enumerate() {
        let block = block_at(at).map(|s| s.name.as_str());
        let in_dmesg = block.is_some_and(|b| m.dmesg_blocks.contains(&b));
        // Xen's console
        if l.contains("Triple fault - invoking HVM shutdown action")
            && xen_guest_line(l).is_some_and(|d| d != 0)
        {
            add(&mut v, Kind::GuestCrash, vec![l.to_string()], at);
        }
        // Xen killing a guest (a PV guest's fault Xen cannot deliver, and the like)
        let xen_killed = l.starts_with("(XEN)")
            && (l.contains("domain_crash called from")
                || l.contains("domain_crash_sync called from")
                || (l.contains(") crashed on cpu#") && !l.contains("Domain 0 (")));
        if xen_killed {
            add(&mut v, Kind::GuestCrash, vec![l.to_string()], at);
        }
        if l.starts_with("(XEN)") && l.contains("Panic on CPU") {
            // the reason is the next line of the panic box
            let mut ev = vec![l.to_string()];
            ev.extend(lines.get(i + 1).map(|(_, n)| n.to_string()));
            add(&mut v, Kind::XenCrash, ev, at);
        }
        if l.starts_with("(XEN)") && l.contains("Hardware Dom0 crashed") {
            add(&mut v, Kind::Dom0Crash, vec![l.to_string()], at);
        }
        // QEMU's own stderr shares the log (evidence when QEMU ended badly, below)
        if l.starts_with("qemu-system-") {
            qemu_lines.push(l.to_string());
        }
        // dom0's kernel: on the console (outside blocks) or in a dmesg block
        if block.is_none() || in_dmesg {
            let (stamp, text) = match kernel_stamp(l) {
                Some((t, text)) => (Some(t), text),
                None => (None, l),
            };
            let at_t = |t: Option<f64>| {
                if in_dmesg {
                    t.map_or(log.len(), place)
                } else {
                    at
                }
            };
            if kernel_crash(text) {
                add(&mut v, Kind::Dom0Crash, vec![l.to_string()], at_t(stamp));
            } else if let Some(name) = signal_victim(text) {
                if m.product_names.iter().any(|p| name.starts_with(p)) {
                    v.product.push(l.to_string());
                } else {
                    // a fault only if the step it hit failed (rc > 128), see below
                    let hit =
                        stamp.and_then(|t| spans.iter().find(|s| s.t0 <= t && t <= s.t1 + 0.5));
                    match hit {
                        Some(s) if s.rc.is_some_and(|rc| rc > 128) => {
                            add(&mut v, Kind::ToolCrash, vec![l.to_string()], s.begin)
                        }
                        _ => v.recovered.push(l.to_string()),
                    }
                }
            }
        }
        if m.product_lines.iter().any(|p| l.contains(p)) && !l.starts_with("@@") {
            v.product.push(l.to_string());
        }
        if l.contains("Assertion `") && l.contains("' failed") && block.is_some() {
            v.recovered.push(l.to_string());
        }
    }
    // Steps that died of a signal and stayed dead; re-runs that recovered.
    for s in &spans {
        match s.rc {
            // dom0-init.sh re-runs a read-only step twice at most: dying all three times is no flake
            Some(rc) if rc > 128 && s.retries >= 2 => v.product.push(format!(
                "step {} died of signal {} on each of its {} runs (deterministic, not the emulation's flake): {}",
                s.name,
                rc - 128,
                s.retries + 1,
                s.end_line
            )),
            Some(rc) if rc > 128 => add(
                &mut v,
                Kind::ToolCrash,
                vec![format!(
                    "step {} died of signal {}: {}",
                    s.name,
                    rc - 128,
                    s.end_line
                )],
                s.begin,
            ),
            _ if s.retries > 0 => v.recovered.push(format!(
                "step {} re-run {} time(s) after dying of a signal: {}",
                s.name, s.retries, s.end_line
            )),
            _ => {}
        }
    }
    for &(_, l) in &lines {
        let retried_migration =
            l.starts_with("attempt=1 migrate_rc=") && !l.contains("migrate_rc=0 ");
        if l.starts_with("(re-running ") || retried_migration {
            v.recovered.push(l.to_string());
        }
    }
    let reached_init = log.contains(m.init);
    let done = log.contains(m.done);
    if !reached_init {
        let tail: Vec<String> = lines
            .iter()
            .rev()
            .filter(|(_, l)| !l.trim().is_empty())
            .take(3)
            .map(|(_, l)| l.to_string())
            .collect();
        let mut ev = vec![format!("no {:?} in the log; its last lines:", m.init)];
        ev.extend(tail.into_iter().rev());
        add(&mut v, Kind::NoDom0Init, ev, 0);
    }
    // How QEMU ended
    if let Some(VmEnd {
        secs,
        stopped: true,
        ..
    }) = end
    {
        // the fatal line is the evidence; QEMU's end was ours
        let what = format!("QEMU stopped by the harness after {secs:.0} s: the machine had halted");
        if let Some(f) = v
            .faults
            .iter_mut()
            .find(|f| matches!(f.kind, Kind::XenCrash | Kind::Dom0Crash))
        {
            f.evidence.push(what);
        }
        return finish(v);
    }
    if let Some(VmEnd { code, secs, .. }) = end {
        let last_step = lines.iter().rev().find_map(|(_, l)| {
            l.strip_prefix("@@START ")
                .and_then(|r| r.strip_suffix("@@"))
        });
        let doing = last_step.map_or(String::new(), |s| format!("; the last step begun: {s}"));
        let in_product =
            last_step.is_some_and(|s| m.product_steps.iter().any(|p| s.starts_with(p)));
        if matches!(code, Some(124 | 137)) && in_product && !done {
            v.product.push(format!(
                "QEMU killed at the timeout after {secs:.0} s while dom0 waited on xentinel{doing}"
            ));
        }
        let (kind, what) = match code {
            Some(124 | 137) => (
                Kind::Timeout,
                format!("QEMU killed by boot.sh's timeout after {secs:.0} s"),
            ),
            Some(c) if c > 128 => (
                Kind::QemuDied,
                format!("QEMU died of signal {} after {secs:.0} s", c - 128),
            ),
            Some(c) if c != 0 && !done => (
                Kind::QemuDied,
                format!("QEMU exited with status {c} after {secs:.0} s"),
            ),
            None => (
                Kind::QemuDied,
                format!("boot.sh was killed by a signal after {secs:.0} s"),
            ),
            _ => return finish(v),
        };
        qemu_lines.push(format!("{what}{doing}"));
        add(&mut v, kind, qemu_lines, log.len());
    }
    finish(v)
}

fn finish(mut v: Verdict) -> Verdict {
    v.faults.sort_by_key(|f| f.at);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean run: dom0 starts, a few blocks, done.
    const CLEAN: &str = "(XEN) Xen version 4.17.7 (Debian 4.17.7+13-g2445b30a44-0+deb12u1)\n\
@@XEN-VM dom0 init started@@\n\
@@START setup t0=4.20@@\n\
@@BEGIN setup@@\n\
kernel 6.1.0-56-amd64; hypervisor xen 4.17\n\
@@END setup rc=0 t0=4.20 t1=6.02 lines=1@@\n\
@@START migrate t0=40.00@@\n\
@@BEGIN migrate@@\n\
migrate_rc=0 migrate_seconds=14.59 attempts=1\n\
@@END migrate rc=0 t0=40.00 t1=54.59 lines=1@@\n\
@@DONE@@\n";

    fn end(code: i32) -> Option<VmEnd> {
        Some(VmEnd {
            code: Some(code),
            secs: 100.0,
            stopped: false,
        })
    }

    #[test]
    fn a_clean_run_has_no_fault() {
        let v = classify(CLEAN, end(0), &XEN_VM);
        assert!(
            v.faults.is_empty() && v.product.is_empty() && v.recovered.is_empty(),
            "{v:?}"
        );
    }

    /// The CI failure of issue 17: the PVH guest triple-faulted as `xl migrate` began.
    #[test]
    fn a_guest_triple_fault_is_an_environment_fault_from_where_it_was_printed() {
        let log = CLEAN.replace(
            "@@BEGIN migrate@@\n",
            "(XEN) d2v0 Triple fault - invoking HVM shutdown action 1\n\
             @@BEGIN migrate@@\n\
             libxl: error: libxl_stream_write.c:347:libxl__xc_domain_save_done: Domain 2:saving domain: domain did not respond to suspend request: Invalid argument\n",
        );
        let log = log.replace("lines=1@@\n@@DONE", "lines=2@@\n@@DONE");
        let v = classify(&log, end(0), &XEN_VM);
        assert!(v.environment(), "{v:?}");
        assert_eq!(v.faults.len(), 1, "{v:?}");
        let f = &v.faults[0];
        assert_eq!(f.kind, Kind::GuestCrash);
        assert_eq!(
            f.evidence,
            ["(XEN) d2v0 Triple fault - invoking HVM shutdown action 1"]
        );
        // the setup block ended before it: trusted; migrate came after: not
        assert!(log[..f.at].contains("@@END setup") && !log[..f.at].contains("@@BEGIN migrate"));
        // Xen's console with timestamps, and dom0 itself (d0) is not a guest
        let stamped = "(XEN) [  131.200412] d3v0 Triple fault - invoking HVM shutdown action 1\n";
        assert_eq!(
            classify(&format!("{CLEAN}{stamped}"), end(0), &XEN_VM).faults[0].kind,
            Kind::GuestCrash
        );
        let d0 = "(XEN) d0v0 Triple fault - invoking HVM shutdown action 1\n";
        assert!(
            classify(&format!("{CLEAN}{d0}"), end(0), &XEN_VM)
                .faults
                .is_empty()
        );
    }

    /// Xen 4.17's panic box (from a public report of a Xen BUG at boot).
    #[test]
    fn a_xen_panic_is_an_environment_fault() {
        let log = "(XEN) Xen call trace:\n\
(XEN)    [<ffff82d0403a5ef8>] R amd_iommu_prepare+0x288/0x390\n\
(XEN) \n\
(XEN) ****************************************\n\
(XEN) Panic on CPU 0:\n\
(XEN) Xen BUG at drivers/passthrough/amd/iommu_init.c:1386\n\
(XEN) ****************************************\n\
(XEN) \n\
(XEN) Reboot in five seconds...\n";
        let v = classify(log, end(124), &XEN_VM);
        let kinds: Vec<Kind> = v.faults.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [Kind::NoDom0Init, Kind::XenCrash, Kind::Timeout],
            "{v:?}"
        );
        assert_eq!(
            v.faults[1].evidence,
            [
                "(XEN) Panic on CPU 0:",
                "(XEN) Xen BUG at drivers/passthrough/amd/iommu_init.c:1386"
            ]
        );
        assert_eq!(
            v.faults[0].evidence.last().unwrap(),
            "(XEN) Reboot in five seconds..."
        );
        assert!(v.environment());
    }

    #[test]
    fn qemu_killed_at_the_timeout_names_the_step_it_was_in() {
        let log = CLEAN.replace("@@BEGIN migrate@@\nmigrate_rc=0 migrate_seconds=14.59 attempts=1\n@@END migrate rc=0 t0=40.00 t1=54.59 lines=1@@\n@@DONE@@\n", "qemu-system-x86_64: terminating on signal 15 from pid 4242 (timeout)\n");
        let v = classify(&log, end(124), &XEN_VM);
        assert_eq!(v.faults.len(), 1, "{v:?}");
        assert_eq!(v.faults[0].kind, Kind::Timeout);
        assert_eq!(
            v.faults[0].evidence,
            [
                "qemu-system-x86_64: terminating on signal 15 from pid 4242 (timeout)",
                "QEMU killed by boot.sh's timeout after 100 s; the last step begun: migrate t0=40.00"
            ]
        );
        // QEMU dying of a signal, or exiting with an error before dom0 finished
        let log = CLEAN.replace("@@DONE@@\n", "");
        assert_eq!(
            classify(&log, end(139), &XEN_VM).faults[0].kind,
            Kind::QemuDied
        );
        assert_eq!(
            classify(&log, end(1), &XEN_VM).faults[0].kind,
            Kind::QemuDied
        );
        assert!(classify(CLEAN, end(0), &XEN_VM).faults.is_empty());
        // killed while dom0 waited on the exporter: a product hang, never rerun
        let hung = CLEAN.replace(
            "@@START migrate t0=40.00@@\n@@BEGIN migrate@@\nmigrate_rc=0 migrate_seconds=14.59 attempts=1\n@@END migrate rc=0 t0=40.00 t1=54.59 lines=1@@\n@@DONE@@\n",
            "@@START scrape-3 t0=40.00@@\n",
        );
        let v = classify(&hung, end(124), &XEN_VM);
        assert_eq!(v.faults[0].kind, Kind::Timeout, "{v:?}");
        assert!(!v.environment(), "{v:?}");
        assert!(
            v.product[0].contains("while dom0 waited on xentinel; the last step begun: scrape-3")
        );
    }

    #[test]
    fn a_tool_dying_of_a_signal_is_a_fault_only_where_its_step_failed() {
        // xl died in `xl create` (rc 139) and the kernel said so (dmesg block at the end)
        let log = CLEAN.replace(
            "@@DONE@@\n",
            "@@BEGIN xl-create-tinynew@@\n\
             Parsing config from /etc/xen/guests/tinynew.cfg\n\
             Segmentation fault\n\
             @@END xl-create-tinynew rc=139 t0=60.00 t1=61.50 lines=2@@\n\
             @@BEGIN scrape-5@@\n@@END scrape-5 rc=0 t0=62.00 t1=63.00 lines=0 retries=1@@\n\
             @@BEGIN dmesg-tail@@\n\
             [   61.020311] xl[912]: segfault at 8 ip 00007f3c1b2a4e1d sp 00007ffd6a0c2f50 error 4 in libc.so.6[7f3c1b228000+155000]\n\
             [   62.310001] traps: wget[930] general protection fault ip:4a1f2b sp:7ffc1c0e8e00 error:0 in busybox[401000+b2000]\n\
             @@END dmesg-tail rc=0 t0=90.00 t1=90.10 lines=2@@\n\
             @@DONE@@\n",
        );
        let v = classify(&log, end(0), &XEN_VM);
        assert!(v.environment(), "{v:?}");
        assert_eq!(v.faults.len(), 1, "{v:?}");
        let f = &v.faults[0];
        assert_eq!(f.kind, Kind::ToolCrash);
        assert!(f.evidence[0].contains("xl[912]: segfault at 8"), "{f:?}");
        assert!(
            f.evidence[1].starts_with("step xl-create-tinynew died of signal 11"),
            "{f:?}"
        );
        assert!(log[f.at..].starts_with("@@BEGIN xl-create-tinynew@@"));
        // wget's crash hit scrape-5, which dom0 re-ran and passed: recovered, not a fault
        assert_eq!(v.recovered.len(), 2, "{v:?}");
        assert!(v.recovered.iter().any(|r| r.contains("traps: wget[930]")));
        assert!(
            v.recovered
                .iter()
                .any(|r| r.starts_with("step scrape-5 re-run 1 time(s)"))
        );
        // Dying on every re-run is no flake: busybox 1.35's `wget -T` segfaulted like this in each
        // scrape (seen while writing this harness); never an environment fault.
        let log = CLEAN.replace(
            "@@DONE@@\n",
            "@@BEGIN scrape-1@@\nSegmentation fault\n@@END scrape-1 rc=139 t0=160.97 t1=161.03 lines=1 retries=2@@\n@@DONE@@\n",
        );
        let v = classify(&log, end(0), &XEN_VM);
        assert!(!v.environment() && v.faults.is_empty(), "{v:?}");
        assert!(v.product[0].starts_with("step scrape-1 died of signal 11 on each of its 3 runs"));
    }

    #[test]
    fn xentinel_dying_is_a_product_failure_never_an_environment_fault() {
        let log = CLEAN.replace(
            "@@DONE@@\n",
            "@@BEGIN exporter-status@@\nexporter exited rc=139\n@@END exporter-status rc=0 t0=80.00 t1=80.01 lines=1@@\n\
             @@BEGIN dmesg-tail@@\n\
             [   70.500000] xentinel[301]: segfault at 0 ip 000055d0c0ffee00 sp 00007ffd6a0c2f50 error 6 in xentinel[55d0c0f00000+400000]\n\
             @@END dmesg-tail rc=0 t0=90.00 t1=90.10 lines=1@@\n\
             (XEN) d2v0 Triple fault - invoking HVM shutdown action 1\n\
             @@DONE@@\n",
        );
        let v = classify(&log, end(0), &XEN_VM);
        assert_eq!(v.product.len(), 2, "{v:?}");
        assert_eq!(v.faults.len(), 1, "the guest's crash is still seen: {v:?}");
        assert!(!v.environment(), "a run where xentinel died is never rerun");
    }

    /// Dom0 panicked on purpose (`echo c > /proc/sysrq-trigger` in dom0) under this harness:
    /// Xen with `noreboot` halts, QEMU runs on until the timeout.
    #[test]
    fn dom0_kernel_crashes_count_on_its_console_and_in_its_dmesg_not_in_guest_consoles() {
        let tail = "panicking dom0 on purpose\n\
[    6.896017] sysrq: Trigger a crash\n\
[    6.898582] Kernel panic - not syncing: sysrq triggered crash\n\
[    6.899882] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-57-amd64 #1  Debian 6.1.192-3\n\
[    6.979817] Kernel Offset: disabled\n\
(XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting.\n\
qemu-system-x86_64: terminating on signal 15 from pid 27154 (timeout)\n";
        let log = CLEAN.replace("@@DONE@@\n", tail);
        let v = classify(&log, end(124), &XEN_VM);
        let kinds: Vec<Kind> = v.faults.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [Kind::Dom0Crash, Kind::Timeout], "{v:?}");
        assert_eq!(
            v.faults[0].evidence,
            [
                "[    6.898582] Kernel panic - not syncing: sysrq triggered crash",
                "(XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting."
            ]
        );
        assert!(log[v.faults[0].at..].starts_with("[    6.898582] Kernel panic"));
        // a harness that saw Xen halt stops QEMU at once: no timeout fault then
        let cut = &log[..log.find("qemu-system").unwrap()];
        assert_eq!(
            fatal_line(cut),
            Some("(XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting.")
        );
        let stopped = Some(VmEnd {
            code: Some(143),
            secs: 30.0,
            stopped: true,
        });
        let v = classify(cut, stopped, &XEN_VM);
        let kinds: Vec<Kind> = v.faults.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [Kind::Dom0Crash], "{v:?}");
        assert!(v.faults[0].evidence[2].starts_with("QEMU stopped by the harness after 30 s"));
        assert_eq!(fatal_line(CLEAN), None);
        // A guest the harness crashed on purpose (PVH, on_crash="preserve"): its panic is in
        // its console, printed by dom0 in a block; Xen says nothing. Not a fault.
        let guest = CLEAN.replace(
            "@@DONE@@\n",
            "@@BEGIN guest-consoles@@\n\
             --- /var/log/xen/console/guest-tinypvh.log\n\
             GUEST[181.59] CRASH requested by dom0\n\
             [  181.658083] sysrq: Trigger a crash\n\
             [  181.664666] Kernel panic - not syncing: sysrq triggered crash\n\
             @@END guest-consoles rc=0 t0=280.09 t1=280.29 lines=4@@\n@@DONE@@\n",
        );
        let v = classify(&guest, end(0), &XEN_VM);
        assert!(v.faults.is_empty() && v.product.is_empty(), "{v:?}");
    }

    /// Xen crashing a PV guest (from a public report, Xen 4.8).
    #[test]
    fn xen_killing_a_guest_is_an_environment_fault() {
        let log = CLEAN.replace(
            "@@DONE@@\n",
            "(XEN) domain_crash_sync called from entry.S: fault at ffff82d08020fc3e entry.o#create_bounce_frame+0x67/0x142\n\
             (XEN) Domain 3 (vcpu#0) crashed on cpu#3:\n@@DONE@@\n",
        );
        let v = classify(&log, end(0), &XEN_VM);
        assert_eq!(v.faults.len(), 1, "{v:?}");
        assert_eq!(
            (v.faults[0].kind, v.faults[0].evidence.len()),
            (Kind::GuestCrash, 2)
        );
    }

    #[test]
    fn a_boot_that_never_reaches_dom0_is_an_environment_fault() {
        let log = "(XEN) Xen version 4.17.7\n(XEN) *** LOADING DOMAIN 0 ***\n";
        let v = classify(log, end(124), &XEN_VM);
        assert_eq!(v.faults[0].kind, Kind::NoDom0Init);
        assert_eq!(v.faults[0].at, 0);
        assert_eq!(v.cutoff(), Some(0));
    }
}
