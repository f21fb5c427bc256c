//! What a server process costs, read from /proc: CPU time (user + system, all threads) and
//! resident memory, for one process or a process with its children (nginx: the master and
//! every worker).

use std::collections::BTreeMap;

/// A server whose cost a row reports.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// How the row names it, e.g. `portcullis`, `nginx`, `auth nginx`.
    pub(crate) label: String,
    pub(crate) pid: u32,
    /// Count the process's children too (nginx's workers).
    pub(crate) with_children: bool,
}

impl Server {
    pub(crate) fn one(label: &str, pid: u32) -> Server {
        Server {
            label: label.into(),
            pid,
            with_children: false,
        }
    }

    pub(crate) fn tree(label: &str, pid: u32) -> Server {
        Server {
            label: label.into(),
            pid,
            with_children: true,
        }
    }

    /// The pids counted: the process, and its children when asked.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        if self.with_children {
            pids.extend(children(self.pid));
        }
        pids
    }

    /// CPU time used so far (user + system of every thread), in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        self.pids().into_iter().filter_map(cpu_ticks).sum()
    }

    /// Resident memory now, in KiB (the sum over the counted processes).
    pub(crate) fn rss_kib(&self) -> u64 {
        self.pids().into_iter().filter_map(rss_kib).sum()
    }
}

/// The fields of /proc/PID/stat after the command name (which may hold spaces and parens):
/// index 0 is field 3 (state), 1 is the ppid, 11 and 12 are utime and stime.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of the process: every thread of it, live or ended, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)? + f.get(12)?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The live children of `pid` (by their ppid in /proc).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_fields(p).and_then(|f| f.get(1).copied()) == Some(u64::from(pid)))
        .collect()
}

/// Clock ticks per second (USER_HZ), the unit of /proc's CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// CPU ticks of each server, taken before and after each measured run and added up.
#[derive(Debug, Default, Clone)]
pub(crate) struct CpuTally {
    ticks: BTreeMap<String, u64>,
    /// The order servers were given in, for the note.
    order: Vec<String>,
}

impl CpuTally {
    /// Each server's ticks now.
    pub(crate) fn snapshot(servers: &[Server]) -> Vec<u64> {
        servers.iter().map(Server::cpu_ticks).collect()
    }

    /// Adds what each server used since `before`.
    pub(crate) fn add(&mut self, servers: &[Server], before: &[u64]) {
        for (s, b) in servers.iter().zip(before) {
            if !self.ticks.contains_key(&s.label) {
                self.order.push(s.label.clone());
            }
            *self.ticks.entry(s.label.clone()).or_default() += s.cpu_ticks().saturating_sub(*b);
        }
    }

    /// Microseconds of CPU per request for each server, in the order given.
    pub(crate) fn per_request(&self, requests: u64) -> Vec<(String, f64)> {
        let us_per_tick = 1e6 / ticks_per_second();
        self.order
            .iter()
            .map(|l| {
                let t = self.ticks.get(l).copied().unwrap_or(0);
                (l.clone(), t as f64 * us_per_tick / requests.max(1) as f64)
            })
            .collect()
    }
}
