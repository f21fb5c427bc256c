//! What a run does (`LOAD_*` environment variables), the tools it needs, and the machine it
//! ran on, recorded beside the table so numbers are never read without their context.

use std::process::Command;

/// What a run does, from `LOAD_*` environment variables. The defaults take about 8 minutes
/// plus seeding (see benches/README.md).
pub(crate) struct Settings {
    /// Seconds per measured run (`LOAD_SECS`).
    pub(crate) secs: u64,
    /// Unmeasured seconds before each measurement (`LOAD_WARMUP`).
    pub(crate) warmup: u64,
    /// Runs per measurement; the median is kept (`LOAD_RUNS`, at least 1).
    pub(crate) runs: usize,
    /// wrk's connections, the same for every throughput row (`LOAD_CONNECTIONS`).
    pub(crate) connections: usize,
    pub(crate) wrk_threads: usize,
    /// taskset CPU lists: servers on one, load generators on the other (`LOAD_SERVER_CPUS`,
    /// `LOAD_CLIENT_CPUS`); both 0 on a one-core machine.
    pub(crate) server_cpu: String,
    pub(crate) client_cpu: String,
    /// Stored users/sessions/revocations for each pass (`LOAD_SCALES`, comma-separated).
    pub(crate) scales: Vec<u64>,
    /// The fixed rate for the added-latency rows (`LOAD_RATE`).
    pub(crate) rate: u64,
    /// The fixed rate of signed-in traffic measured quiet and during a sign-in storm.
    pub(crate) storm_rate: u64,
    /// Sign-ins in flight for the sign-in rows and the storm (`LOAD_STORM_CONNS`).
    pub(crate) storm_conns: usize,
    /// Free text stored with the results, e.g. "other builds ran" (`LOAD_NOTE`).
    pub(crate) note: String,
    /// The 2-thread rows' taskset CPU lists (`LOAD_SERVER_CPUS2`, `LOAD_CLIENT_CPUS2`): servers
    /// on `0-1`; wrk on `2-3` with four cores or more, else on the servers' two cores.
    pub(crate) server_cpus2: String,
    pub(crate) client_cpus2: String,
    /// wrk threads for the 2-thread rows (`LOAD_WRK_THREADS2`).
    pub(crate) wrk_threads2: usize,
    /// Idle keep-alive connections opened for the memory rows (`LOAD_IDLE_CONNS`).
    pub(crate) idle_conns: usize,
    /// The groups of rows to measure (`LOAD_ROWS`, comma-separated; all when unset).
    pub(crate) rows: Vec<String>,
}

/// The groups `LOAD_ROWS` selects from, with what each measures (benches/README.md has the
/// rows of each). Rows another selected row is judged against are measured with it.
pub(crate) const GROUPS: &[(&str, &str)] = &[
    ("proxy", "upstream, plain pingora (both allocators), nginx proxy, signed-in, static reply, no cookie"),
    ("forward-auth", "nginx return 200, forward-auth direct, nginx auth_request -> separate nginx / portcullis"),
    ("latency", "plain pingora and signed-in at a fixed rate"),
    ("sign-in", "argon2id hashes/s, sign-ins/s, signed-in p99 quiet and in a sign-in storm"),
    ("2-threads", "plain pingora (both allocators), nginx proxy and signed-in with 2 threads/workers"),
    ("memory", "resident memory per idle keep-alive connection"),
    ("replicas", "signed-in and sign-ins/s with sled (1 gateway) beside PostgreSQL at 1 and 3 replicas"),
    ("scale", "the signed-in, no-cookie and forward-auth rows again at each LOAD_SCALES count"),
];

/// `key` parsed, or `default` when unset; a value that does not parse is an error, so a typo
/// such as `LOAD_SECS=5s` never silently measures with the default.
fn env_or<T: std::str::FromStr>(key: &str, default: T) -> Result<T, String> {
    match std::env::var(key) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{key}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    /// # Errors
    /// A message naming the variable that does not parse.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (server, client) = if cores >= 2 { ("0", "1") } else { ("0", "0") };
        let (server2, client2) = match cores {
            4.. => ("0-1", "2-3"),
            2..=3 => ("0-1", "0-1"),
            _ => ("0", "0"),
        };
        let rows: Vec<String> = env_or("LOAD_ROWS", String::new())?
            .split(',')
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
        if let Some(bad) = rows.iter().find(|g| !GROUPS.iter().any(|(n, _)| n == g)) {
            let known: Vec<&str> = GROUPS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "LOAD_ROWS: {bad:?} is not a group of rows; the groups are {}",
                known.join(", ")
            ));
        }
        let scales = env_or("LOAD_SCALES", "1,100000,1000000".to_string())?
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| format!("LOAD_SCALES: {s:?} is not a count"))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        if scales.is_empty() {
            return Err("LOAD_SCALES is empty".into());
        }
        Ok(Settings {
            secs: env_or("LOAD_SECS", 5)?.max(1),
            warmup: env_or("LOAD_WARMUP", 1)?,
            runs: env_or("LOAD_RUNS", 3usize)?.max(1),
            connections: env_or("LOAD_CONNECTIONS", 64)?.max(1),
            wrk_threads: env_or("LOAD_WRK_THREADS", 1)?.max(1),
            server_cpu: env_or("LOAD_SERVER_CPUS", server.to_string())?,
            client_cpu: env_or("LOAD_CLIENT_CPUS", client.to_string())?,
            scales,
            rate: env_or("LOAD_RATE", 5000)?.max(1),
            storm_rate: env_or("LOAD_STORM_RATE", 1000)?.max(1),
            storm_conns: env_or("LOAD_STORM_CONNS", 4)?.max(1),
            note: env_or("LOAD_NOTE", String::new())?,
            server_cpus2: env_or("LOAD_SERVER_CPUS2", server2.to_string())?,
            client_cpus2: env_or("LOAD_CLIENT_CPUS2", client2.to_string())?,
            wrk_threads2: env_or("LOAD_WRK_THREADS2", 2)?.max(1),
            idle_conns: env_or("LOAD_IDLE_CONNS", 2000)?.max(1),
            rows,
        })
    }

    /// Whether `LOAD_ROWS` selects the group (every group when it is unset).
    pub(crate) fn wants(&self, group: &str) -> bool {
        self.rows.is_empty() || self.rows.iter().any(|g| g == group)
    }

    /// The settings as recorded in the JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "seconds": self.secs, "warmup": self.warmup, "runs": self.runs,
            "connections": self.connections, "wrk_threads": self.wrk_threads,
            "server_cpus": self.server_cpu, "client_cpus": self.client_cpu,
            "scales": self.scales, "rate": self.rate, "storm_rate": self.storm_rate,
            "storm_conns": self.storm_conns, "note": self.note,
            "server_cpus2": self.server_cpus2, "client_cpus2": self.client_cpus2,
            "wrk_threads2": self.wrk_threads2, "idle_conns": self.idle_conns,
            "rows": if self.rows.is_empty() { vec!["all".to_string()] } else { self.rows.clone() },
        })
    }
}

/// Installs a Debian package when its command is missing (the bench needs wrk; nginx is
/// optional), as root only.
pub(crate) fn ensure_tool(cmd: &str, package: &str) -> bool {
    let found = |c: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {c} || test -x /usr/sbin/{c}"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found(cmd) {
        return true;
    }
    eprintln!("{cmd} is missing; trying apt-get install {package}");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine has no package lists yet: refresh them once, only when needed.
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        install();
    }
    found(cmd)
}

/// The machine: CPU, cores, kernel, nginx and wrk versions, and the load average when the
/// bench started (a high one means the numbers were taken while other work ran).
pub(crate) fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let nginx = Command::new("/usr/sbin/nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let wrk = Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            text.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default();
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "loadavg_at_start": read("/proc/loadavg"),
        "nginx": nginx,
        "wrk": wrk,
    })
}
