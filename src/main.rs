//! The `xentinel` binary: parses the command line and runs one role; the
//! top of the layers (see the crate documentation of `xentinel`), and the
//! only place that ends the process with a status.

use clap::Parser;
use xentinel::cli::Cli;

#[allow(clippy::exit)] // the one place the process ends with a status
fn main() {
    let cli = Cli::parse();
    let level = cli.log_level.parse().unwrap_or(log::LevelFilter::Info);
    xentinel::log::init(level, cli.log_format);
    // The guest agent is one loop in the guest whose memory it reports: one
    // thread is all it needs. The servers get two workers.
    let mut builder = if matches!(cli.command, xentinel::cli::Command::GuestAgent(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xentinel: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let res = rt.block_on(cli.command.run());
    if let Err(e) = res {
        eprintln!("xentinel: {e:#}");
        std::process::exit(1);
    }
}
