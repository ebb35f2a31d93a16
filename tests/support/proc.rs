//! Child processes for tests: the real `xentinel` binary on a free port,
//! killed when the guard drops (even when the test panics).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running child, killed on drop.
pub struct Running {
    pub child: Child,
    pub addr: String,
}

impl Drop for Running {
    /// SIGTERM first, so a demo can stop the Prometheus and Alertmanager it
    /// started; SIGKILL after 10 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use super::http::free_port;

/// The xentinel binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_xentinel")
}

/// Starts `xentinel <args> --web.listen-address 127.0.0.1:<port>` and waits
/// until the port accepts connections.
pub fn spawn_listening(args: &[&str]) -> Running {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(bin())
        .args(args)
        .args(["--web.listen-address", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn xentinel");
    let r = Running { child, addr };
    wait_for_port(&r.addr, Duration::from_secs(20));
    r
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: &str, limit: Duration) {
    let start = Instant::now();
    while !super::http::listens(addr) {
        assert!(
            start.elapsed() < limit,
            "nothing listens on {addr} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
