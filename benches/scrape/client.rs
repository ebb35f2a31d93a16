//! The bench's plumbing: a tiny blocking HTTP/1.1 client over `TcpStream`
//! (keep-alive, `Content-Length` and chunked bodies), child processes that
//! are killed when dropped (even on panic), and `/proc` readings.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One keep-alive HTTP/1.1 connection to a loopback port. The body buffer is
/// kept across requests, so the client does not page-fault a fresh 38 MB
/// buffer into existence on every scrape.
pub struct Conn {
    port: u16,
    r: Option<BufReader<TcpStream>>,
    body: Vec<u8>,
    /// Header lines added to the next request.
    extra: &'static str,
}

impl Conn {
    /// A connection to `127.0.0.1:port`, opened on first use.
    pub fn new(port: u16) -> Self {
        Conn {
            port,
            r: None,
            body: Vec::new(),
            extra: "",
        }
    }

    fn stream(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.r.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            // Small: body reads larger than the buffer bypass it (one copy
            // from the socket, not two).
            self.r = Some(BufReader::with_capacity(16 * 1024, s));
        }
        Ok(self.r.as_mut().expect("just set"))
    }

    /// The body of the last response.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// `GET path`, returning the status; reconnects once if the kept-alive
    /// connection was closed.
    pub fn get(&mut self, path: &str) -> std::io::Result<u16> {
        self.request("GET", path, None)
    }

    /// `GET path` with `Accept-Encoding: gzip`; the body is kept compressed.
    pub fn get_gzip(&mut self, path: &str) -> std::io::Result<u16> {
        self.extra = "Accept-Encoding: gzip\r\n";
        let r = self.request("GET", path, None);
        self.extra = "";
        r
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&mut self, path: &str, body: &[u8]) -> std::io::Result<u16> {
        self.request("POST", path, Some(body))
    }

    fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<u16> {
        match self.try_request(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.r = None;
                self.try_request(method, path, body)
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<u16> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: xentinel-bench\r\n{}",
            self.extra
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut out = std::mem::take(&mut self.body);
        out.clear();
        let res = self.exchange(&req, body, &mut out);
        self.body = out;
        let (status, close) = res?;
        if close {
            self.r = None;
        }
        Ok(status)
    }

    /// Sends one request and reads the response into `out`: (status, close).
    fn exchange(
        &mut self,
        req: &str,
        body: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> std::io::Result<(u16, bool)> {
        let r = self.stream()?;
        {
            let s = r.get_mut();
            let mut msg = req.as_bytes().to_vec();
            if let Some(b) = body {
                msg.extend_from_slice(b);
            }
            s.write_all(&msg)?;
        }
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut len: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(bad("eof in headers".into()));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.parse().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                if n == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        r.read_line(&mut line)?;
                        if line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                read_n(r, n, out)?;
                line.clear();
                r.read_line(&mut line)?;
            }
        } else if let Some(n) = len {
            read_n(r, n, out)?;
        } else {
            r.read_to_end(out)?;
            close = true;
        }
        Ok((status, close))
    }
}

/// Appends exactly `n` bytes from `r` to `out` (no zero-filling first).
fn read_n(r: &mut BufReader<TcpStream>, n: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let got = r.by_ref().take(n as u64).read_to_end(out)?;
    if got < n {
        return Err(bad(format!("body cut short: {got} of {n} bytes")));
    }
    Ok(())
}

fn bad(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

/// A loopback port free right now (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// A child process killed and reaped when dropped, so no exporter outlives
/// the bench, even when it panics.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Spawns `program args` with `env` added, stdout and stderr to `log`
    /// (a file path). `MALLOC_ARENA_MAX` is not inherited: only `env` sets it.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Proc {
        let out = std::fs::File::create(log).expect("create the child's log file");
        let err = out.try_clone().expect("clone the log file");
        let child = Command::new(program)
            .args(args)
            .env_remove("MALLOC_ARENA_MAX")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            name: name.into(),
            child,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET path` answers 200 (at most `limit`); panics with the
    /// child's log when it exits or never answers.
    pub fn wait_ready(&mut self, port: u16, path: &str, limit: Duration, log: &Path) {
        if let Err(e) = self.try_ready(port, path, limit, log) {
            panic!("{e}");
        }
    }

    /// Like [`Proc::wait_ready`], returning the failure with the child's log.
    pub fn try_ready(
        &mut self,
        port: u16,
        path: &str,
        limit: Duration,
        log: &Path,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let l = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "{} exited ({st}) before it was ready: {}",
                    self.name,
                    l.trim()
                ));
            }
            if let Ok(200) = Conn::new(port).get(path) {
                return Ok(());
            }
            if start.elapsed() > limit {
                let l = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "{} not ready after {limit:?}: {}",
                    self.name,
                    l.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14, 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when it cannot be asked).
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Samples of a text exposition body: non-empty lines not starting with `#`.
pub fn series_count(body: &[u8]) -> usize {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count()
}
