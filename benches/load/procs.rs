//! Processes the bench starts (pinned with `taskset`, killed when dropped), the wrk runner, and
//! a tiny blocking HTTP GET for readiness probes and counters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_addr() -> Result<SocketAddr, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process that is killed (by its own pid) when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    /// Starts `program args` pinned to `cpus` (a taskset list), stdout/stderr to `log`.
    pub(crate) fn spawn(
        name: &str,
        cpus: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Proc, BoxError> {
        let out = std::fs::File::create(log)?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(cpus)
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB, from /proc.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Waits for the process to end; its output (stdout and stderr) from the log file.
    pub(crate) fn wait_stdout(&mut self) -> Result<String, BoxError> {
        let status = self.child.wait()?;
        let out = std::fs::read_to_string(&self.log)?;
        if !status.success() {
            return Err(format!("{} failed ({status}): {out}", self.name).into());
        }
        Ok(out)
    }

    /// Fails if the process has already exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("{} exited: {status}", self.name).into()),
            None => Ok(()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already ended (a helper that finished): nothing to stop.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first: nginx's master then takes its workers down with it, where SIGKILL
        // would leave them running after the bench.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking `GET` over a fresh connection: status and body.
pub(crate) fn http_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), BoxError> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer from {addr}{path}"))?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// Waits until `GET path` answers with any status (the server is up), or fails after `limit`.
pub(crate) fn wait_http(
    addr: SocketAddr,
    host: &str,
    path: &str,
    limit: Duration,
) -> Result<(), BoxError> {
    let start = Instant::now();
    loop {
        if http_get(addr, host, path, &[]).is_ok() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!("nothing answers on {addr} after {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One wrk measurement.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Measure {
    pub(crate) rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Responses with status >= 400, as wrk counts them.
    pub non_2xx_3xx: u64,
    /// Connect, read, write and timeout errors.
    pub(crate) errors: u64,
    pub(crate) requests: u64,
}

/// Prints a JSON line with the numbers wrk's text output lacks (p99.9, exact counts).
pub(crate) const WRK_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50":%d,"p99":%d,"p999":%d,"errors":%d,"status":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.connect + e.read + e.write + e.timeout, e.status))
end
"#;

pub(crate) struct Wrk {
    pub(crate) cpus: String,
    pub(crate) connections: usize,
    pub(crate) threads: usize,
    pub(crate) script: std::path::PathBuf,
}

impl Wrk {
    pub(crate) fn new(
        dir: &Path,
        cpus: &str,
        connections: usize,
        threads: usize,
    ) -> Result<Wrk, BoxError> {
        let script = dir.join("report.lua");
        std::fs::write(&script, WRK_LUA)?;
        Ok(Wrk {
            cpus: cpus.into(),
            connections,
            threads,
            script,
        })
    }

    /// One wrk run of `secs` against `url` with extra headers.
    pub(crate) fn run(
        &self,
        url: &str,
        headers: &[String],
        secs: u64,
    ) -> Result<Measure, BoxError> {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(&self.cpus)
            .arg("wrk")
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{secs}s"))
            .arg("--timeout")
            .arg("5s")
            .arg("-s")
            .arg(&self.script);
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        let out = cmd.arg(url).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("WRKJSON "))
            .ok_or_else(|| {
                format!(
                    "wrk gave no result for {url}: {}{}",
                    text,
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let v: serde_json::Value = serde_json::from_str(line)?;
        let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
        let secs = (n("duration_us") / 1e6).max(1e-9);
        Ok(Measure {
            rps: n("requests") / secs,
            p50_ms: n("p50") / 1e3,
            p99_ms: n("p99") / 1e3,
            p999_ms: n("p999") / 1e3,
            non_2xx_3xx: n("status") as u64,
            errors: n("errors") as u64,
            requests: n("requests") as u64,
        })
    }
}

/// The median of each figure over the runs (runs are few, so each figure separately).
pub(crate) fn median(runs: &[Measure]) -> Measure {
    let med = |f: fn(&Measure) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Measure {
        rps: med(|m| m.rps),
        p50_ms: med(|m| m.p50_ms),
        p99_ms: med(|m| m.p99_ms),
        p999_ms: med(|m| m.p999_ms),
        non_2xx_3xx: runs.iter().map(|m| m.non_2xx_3xx).sum(),
        errors: runs.iter().map(|m| m.errors).sum(),
        requests: runs.iter().map(|m| m.requests).sum(),
    }
}

/// Opens a connection, sends `request` (a whole HTTP/1.1 request head) and reads the whole
/// answer (Content-Length or chunked), leaving the connection open and idle.
pub(crate) fn one_request_kept(addr: SocketAddr, request: &[u8]) -> Result<TcpStream, BoxError> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(format!("{addr} closed the connection before answering").into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 2") {
            let line = head.lines().next().unwrap_or_default().to_string();
            return Err(format!("{addr} answered {line:?}").into());
        }
        let body = &buf[end + 4..];
        let length = head.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        let done = match length {
            Some(len) => body.len() >= len,
            None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if done {
            return Ok(s);
        }
    }
}

/// Raises this process's open-files limit to its hard limit (the idle-connection rows hold
/// thousands of sockets); the servers it starts inherit it.
pub(crate) fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}
