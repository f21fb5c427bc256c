//! The load bench: `cargo bench --bench load`.
//!
//! In one run on loopback it starts a small fast upstream, a plain Pingora pass-through proxy,
//! nginx (one worker) and the real `portcullis` binary (one thread), all pinned to the server
//! core, and measures each with wrk pinned to the other core: same connections, same duration,
//! a warm-up, then `LOAD_RUNS` runs of which the median is kept. It then repeats the Portcullis
//! rows with 100 000 and 1 000 000 stored users, sessions and revocations. It prints one table
//! and writes the same as JSON to `target/load-bench.json`. See `benches/README.md`.
//!
//! The binary also carries the helpers it starts, as subcommands:
//! `upstream ADDR`, `plain-pingora LISTEN UPSTREAM`, `argon2 CONFIG SECS`,
//! `signins URL FLOW COOKIE CONNS SECS`.

mod nginx;
mod plain_pingora;
mod procs;
mod seed;
mod storm;
mod upstream;

use portcullis::config::Config;
use portcullis::loadgen::table::{self, Row};
use procs::{free_addr, http_get, median, wait_http, BoxError, Measure, Proc, Wrk};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

const HOST: &str = "app.test";
const FLOW: &str = "bench-login";
const COOKIE: &str = "portcullis_session";

/// What a run does, from `LOAD_*` environment variables (defaults keep a run near 8 minutes).
struct Settings {
    secs: u64,
    warmup: u64,
    runs: usize,
    connections: usize,
    wrk_threads: usize,
    server_cpu: String,
    client_cpu: String,
    scales: Vec<u64>,
    /// The fixed rate for the added-latency rows.
    rate: u64,
    /// The fixed rate of signed-in traffic measured quiet and during a sign-in storm.
    storm_rate: u64,
    storm_conns: usize,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (server, client) = if cores >= 2 { ("0", "1") } else { ("0", "0") };
        Settings {
            secs: env_or("LOAD_SECS", 5),
            warmup: env_or("LOAD_WARMUP", 1),
            runs: env_or("LOAD_RUNS", 3usize).max(1),
            connections: env_or("LOAD_CONNECTIONS", 64),
            wrk_threads: env_or("LOAD_WRK_THREADS", 1),
            server_cpu: env_or("LOAD_SERVER_CPUS", server.to_string()),
            client_cpu: env_or("LOAD_CLIENT_CPUS", client.to_string()),
            scales: std::env::var("LOAD_SCALES")
                .unwrap_or_else(|_| "1,100000,1000000".into())
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
            rate: env_or("LOAD_RATE", 5000),
            storm_rate: env_or("LOAD_STORM_RATE", 1000),
            storm_conns: env_or("LOAD_STORM_CONNS", 4),
        }
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; only positional words select a helper.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["upstream", addr] => addr
            .parse()
            .map_err(BoxError::from)
            .and_then(|a| upstream::run(a).map_err(BoxError::from)),
        ["plain-pingora", listen, up] => match (listen.parse(), up.parse()) {
            (Ok(l), Ok(u)) => plain_pingora::run(l, u, 1),
            _ => Err("plain-pingora LISTEN UPSTREAM".into()),
        },
        ["argon2", config, secs] => Config::load(Path::new(config))
            .map_err(BoxError::from)
            .and_then(|c| storm::argon2_rate(&c, secs.parse().unwrap_or(3.0))),
        ["signins", url, flow, cookie, conns, secs] => storm::signins(
            url,
            flow,
            cookie,
            conns.parse().unwrap_or(4),
            secs.parse().unwrap_or(5.0),
        ),
        [] => bench(),
        _ => Err(format!("unknown arguments {args:?}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs a Debian package when its command is missing (the bench needs wrk; nginx is
/// optional), as root only.
fn ensure_tool(cmd: &str, package: &str) -> bool {
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
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    found(cmd)
}

/// The bench's working directory: fresh, under `target/`.
fn work_dir() -> Result<PathBuf, BoxError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/load-bench");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn gateway_toml(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"# generated by the load bench
[server]
listen = ["{listen}"]
threads = 1
[storage]
path = "{d}/db"
[session]
cookie_name = "{COOKIE}"
lifetime = "12h"
[admin]
socket = "{d}/admin.sock"
[[apps]]
name = "bench"
hosts = ["{HOST}", "127.0.0.1"]
upstream = "{upstream}"
flow = "{FLOW}"
allowed_groups = []
bypass = []
[[flows]]
slug = "{FLOW}"
title = "Sign in"
designation = "authentication"
stages = ["identify", "password", "login"]
[stages.identify]
kind = "identification"
user_fields = ["username", "email"]
[stages.password]
kind = "password"
[stages.login]
kind = "user_login"
"#
    )
}

/// Everything the measuring functions need.
struct Bench {
    s: Settings,
    wrk: Wrk,
    dir: PathBuf,
    exe: PathBuf,
    rows: Vec<Row>,
}

fn fill(row: &mut Row, m: &Measure) {
    row.rps = Some(m.rps);
    row.p50_ms = Some(m.p50_ms);
    row.p99_ms = Some(m.p99_ms);
    row.p999_ms = Some(m.p999_ms);
    let mut notes = Vec::new();
    if m.non_2xx_3xx > 0 {
        notes.push(format!("{} answers >= 400", m.non_2xx_3xx));
    }
    if m.errors > 0 {
        notes.push(format!("{} socket errors", m.errors));
    }
    if !row.note.is_empty() {
        notes.insert(0, row.note.clone());
    }
    row.note = notes.join("; ");
}

impl Bench {
    /// Warm-up, then the runs; the median row.
    fn wrk_row(
        &self,
        name: &str,
        url: &str,
        headers: &[String],
        note: &str,
    ) -> Result<Row, BoxError> {
        eprintln!("measuring: {name}");
        if self.s.warmup > 0 {
            self.wrk.run(url, headers, self.s.warmup)?;
        }
        let runs = (0..self.s.runs)
            .map(|_| self.wrk.run(url, headers, self.s.secs))
            .collect::<Result<Vec<_>, _>>()?;
        let mut row = Row::new(name);
        row.note = note.to_string();
        fill(&mut row, &median(&runs));
        Ok(row)
    }

    /// `portcullis bench` at a fixed rate on the client core: the "all" row of its JSON.
    fn rate_row(
        &self,
        name: &str,
        url: &str,
        cookie: Option<&str>,
        rate: u64,
    ) -> Result<Row, BoxError> {
        eprintln!("measuring: {name}");
        let json = self.dir.join(format!(
            "rate-{}.json",
            name.replace(|c: char| !c.is_alphanumeric(), "_")
        ));
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(&self.s.client_cpu)
            .arg(env!("CARGO_BIN_EXE_portcullis"))
            .args(["bench", url, "-c", "32", "--threads", "1", "--warmup", "1s"])
            .arg("--rate")
            .arg(rate.to_string())
            .arg("-d")
            .arg(format!("{}s", self.s.secs * self.s.runs as u64))
            .arg("--json")
            .arg(&json);
        if let Some(c) = cookie {
            cmd.arg("--cookie").arg(c);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(format!(
                "portcullis bench failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
        let all = &v["rows"][0];
        let f = |k: &str| all[k].as_f64();
        Ok(Row {
            rps: f("rps"),
            p50_ms: f("p50_ms"),
            p99_ms: f("p99_ms"),
            p999_ms: f("p999_ms"),
            note: format!(
                "fixed {rate} req/s; {}",
                all["note"].as_str().unwrap_or_default()
            ),
            ..Row::new(name)
        })
    }

    fn spawn_self(&self, name: &str, cpus: &str, args: &[&str]) -> Result<Proc, BoxError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Proc::spawn(
            name,
            cpus,
            &self.exe,
            &args,
            &[],
            &self.dir.join(format!("{name}.log")),
        )
    }

    fn push(&mut self, row: Row) {
        eprintln!(
            "  {}",
            table::render(std::slice::from_ref(&row))
                .lines()
                .nth(2)
                .unwrap_or("")
        );
        self.rows.push(row);
    }

    fn find(&self, name: &str) -> Row {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .unwrap_or_else(|| Row::new(name))
    }
}

fn upstream_stats(addr: SocketAddr) -> Result<(u64, u64), BoxError> {
    let (_, body) = http_get(addr, "up", "/__stats", &[])?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    Ok((
        v["connections"].as_u64().unwrap_or(0),
        v["requests"].as_u64().unwrap_or(0),
    ))
}

fn machine() -> serde_json::Value {
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
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "nginx": nginx,
    })
}

fn bench() -> Result<(), BoxError> {
    let s = Settings::from_env();
    if !ensure_tool("wrk", "wrk") {
        return Err("wrk is needed: apt-get install wrk".into());
    }
    let have_nginx = ensure_tool("nginx", "nginx-light");
    let dir = work_dir()?;
    let wrk = Wrk::new(&dir, &s.client_cpu, s.connections, s.wrk_threads)?;
    let mut b = Bench {
        wrk,
        dir: dir.clone(),
        exe: std::env::current_exe()?,
        rows: Vec::new(),
        s,
    };
    let server_cpu = b.s.server_cpu.clone();
    eprintln!(
        "load bench: servers on cpu {}, wrk on cpu {}, {} connections, {}s x {} runs after {}s warm-up",
        b.s.server_cpu, b.s.client_cpu, b.s.connections, b.s.secs, b.s.runs, b.s.warmup
    );

    let up = free_addr()?;
    let _upstream = b.spawn_self("upstream", &server_cpu, &["upstream", &up.to_string()])?;
    wait_http(up, "up", "/", Duration::from_secs(10))?;
    let plain = free_addr()?;
    let _plain = b.spawn_self(
        "plain-pingora",
        &server_cpu,
        &["plain-pingora", &plain.to_string(), &up.to_string()],
    )?;
    wait_http(plain, HOST, "/", Duration::from_secs(10))?;

    let gw = free_addr()?;
    let ports = nginx::Ports {
        ret200: free_addr()?,
        proxy: free_addr()?,
        auth_trivial: free_addr()?,
        auth_portcullis: free_addr()?,
    };
    let _nginx = if have_nginx {
        let conf = nginx::config(&dir, &ports, up, gw, HOST);
        let p = nginx::start(&dir, &server_cpu, &conf)?;
        if p.is_some() {
            wait_http(ports.ret200, HOST, "/", Duration::from_secs(10))?;
        }
        p
    } else {
        None
    };
    let url = |a: SocketAddr, path: &str| format!("http://{a}{path}");
    let host = format!("Host: {HOST}");

    // The baselines.
    let row = b.wrk_row("upstream (bare)", &url(up, "/"), &[], "the limit")?;
    b.push(row);
    let mut row = b.wrk_row("plain pingora", &url(plain, "/"), &[], "")?;
    row.against(&b.find("upstream (bare)"), None);
    b.push(row);
    if _nginx.is_some() {
        let mut row = b.wrk_row(
            "nginx proxy",
            &url(ports.proxy, "/"),
            &[],
            "keep-alive upstream",
        )?;
        row.against(&b.find("upstream (bare)"), None);
        b.push(row);
        let row = b.wrk_row("nginx return 200", &url(ports.ret200, "/"), &[], "")?;
        b.push(row);
    } else {
        b.push(Row::skipped("nginx proxy", "nginx not installed"));
        b.push(Row::skipped("nginx return 200", "nginx not installed"));
    }

    let scales = b.s.scales.clone();
    let mut rss_base: Option<(u64, u64)> = None;
    for (i, &n) in scales.iter().enumerate() {
        let suffix = if i == 0 {
            String::new()
        } else {
            format!(" @{n}")
        };
        let gdir = dir.join(format!("gateway-{n}"));
        std::fs::create_dir_all(&gdir)?;
        let toml = gateway_toml(&gdir, gw, up);
        let cfg_path = gdir.join("portcullis.toml");
        std::fs::write(&cfg_path, &toml)?;
        let config = Config::from_toml(&toml, &cfg_path, std::iter::empty())?;
        eprintln!("seeding {n} users, sessions and revocations");
        let (token, took) = seed::seed(&config, n)?;
        eprintln!("  seeded in {:.1}s", took.as_secs_f64());
        let cfg_arg = cfg_path.display().to_string();
        let mut gateway = Proc::spawn(
            "portcullis",
            &server_cpu,
            Path::new(env!("CARGO_BIN_EXE_portcullis")),
            &["--config".into(), cfg_arg.clone(), "serve".into()],
            &[],
            &gdir.join("portcullis.log"),
        )?;
        wait_http(gw, HOST, "/.portcullis/ping", Duration::from_secs(120))?;
        gateway.check_alive()?;
        let rss_idle = gateway.rss_kib().unwrap_or(0);
        let cookie = format!("Cookie: {COOKIE}={token}");
        let (status, _) = http_get(gw, HOST, "/", &[("Cookie", &format!("{COOKIE}={token}"))])?;
        if status != 200 {
            return Err(format!("the seeded session cookie got {status}, not 200").into());
        }

        let before = upstream_stats(up)?;
        let mut signed_in = b.wrk_row(
            &format!("portcullis signed-in{suffix}"),
            &url(gw, "/"),
            &[cookie.clone(), host.clone()],
            "",
        )?;
        let after = upstream_stats(up)?;
        let rss_loaded = gateway.rss_kib().unwrap_or(0);
        if i == 0 {
            signed_in.against(&b.find("plain pingora"), Some(0.95));
            let mut vs_nginx = signed_in.clone();
            vs_nginx.name = "portcullis signed-in (vs nginx)".into();
            vs_nginx.against(&b.find("nginx proxy"), Some(1.0));
            b.push(signed_in);
            b.push(vs_nginx);
            let conns = after.0.saturating_sub(before.0).saturating_sub(1);
            let reqs = after.1.saturating_sub(before.1).saturating_sub(1).max(1);
            let per = conns as f64 / reqs as f64;
            b.push(Row {
                target: Some("< 0.001".into()),
                met: Some(per < 0.001),
                note: format!(
                    "{per:.6} new upstream connections per request ({conns} for {reqs} requests)"
                ),
                ..Row::new("upstream connection reuse")
            });
            let row = b.wrk_row(
                "portcullis static reply",
                &url(gw, "/.portcullis/ping"),
                &[host.clone()],
                "/.portcullis/ping",
            )?;
            b.push(row);
        } else {
            signed_in.against(&b.find("portcullis signed-in"), Some(0.9));
            b.push(signed_in);
        }

        let mut redirect = b.wrk_row(
            &format!("portcullis no cookie{suffix}"),
            &url(gw, "/some/page?x=1"),
            &[host.clone(), "Accept: text/html".into()],
            "302 to the sign-in",
        )?;
        if i == 0 {
            redirect.against(&b.find("portcullis static reply"), Some(0.9));
        } else {
            redirect.against(&b.find("portcullis no cookie"), Some(0.9));
        }
        b.push(redirect);

        if i == 0 {
            forward_auth_rows(&mut b, gw, &ports, _nginx.is_some(), &cookie, &host)?;
            latency_rows(&mut b, plain, gw, &token)?;
            signin_rows(&mut b, gw, &cfg_arg, &token)?;
        }

        let users = n;
        let rss_note = format!(
            "{} MiB idle, {} MiB under load, with {users} users/sessions/revocations stored",
            rss_idle / 1024,
            rss_loaded / 1024
        );
        let mut mem = Row {
            note: rss_note,
            ..Row::new(format!("gateway RSS{suffix}"))
        };
        match rss_base {
            None => rss_base = Some((n, rss_idle)),
            Some((n0, base)) if n > n0 => {
                let per = (rss_idle.saturating_sub(base) as f64 * 1024.0) / (n - n0) as f64;
                mem.note.push_str(&format!(
                    "; {per:.0} bytes per extra stored session+revocation+user"
                ));
            }
            Some(_) => {}
        }
        b.push(mem);
        drop(gateway);
    }

    let text = table::render(&b.rows);
    println!("\n{text}");
    let context = serde_json::json!({
        "machine": machine(),
        "settings": {
            "seconds": b.s.secs, "warmup": b.s.warmup, "runs": b.s.runs,
            "connections": b.s.connections, "wrk_threads": b.s.wrk_threads,
            "server_cpus": b.s.server_cpu, "client_cpus": b.s.client_cpu,
            "scales": b.s.scales,
        },
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/load-bench.json");
    std::fs::write(&out, format!("{:#}\n", table::to_json(&b.rows, context)))?;
    std::fs::write(dir.join("table.txt"), &text)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Forward-auth rows; skipped with a clear note until the endpoint answers.
fn forward_auth_rows(
    b: &mut Bench,
    gw: SocketAddr,
    ports: &nginx::Ports,
    have_nginx: bool,
    cookie: &str,
    host: &str,
) -> Result<(), BoxError> {
    let cookie_value = cookie.trim_start_matches("Cookie: ");
    let probe = http_get(
        gw,
        HOST,
        nginx::FORWARD_AUTH_PATH,
        &[("Cookie", cookie_value)],
    );
    let available = matches!(probe, Ok((s, _)) if (200..300).contains(&s));
    if !available {
        let why = format!(
            "not available: {} does not answer 2xx to a valid cookie yet (issue 5)",
            nginx::FORWARD_AUTH_PATH
        );
        for name in [
            "forward-auth direct",
            "nginx auth_request -> trivial",
            "nginx auth_request -> portcullis",
        ] {
            b.push(Row::skipped(name, why.clone()));
        }
        return Ok(());
    }
    let url = format!("http://{gw}{}", nginx::FORWARD_AUTH_PATH);
    let mut row = b.wrk_row(
        "forward-auth direct",
        &url,
        &[cookie.into(), host.into()],
        "",
    )?;
    row.against(&b.find("nginx return 200"), Some(0.7));
    b.push(row);
    if !have_nginx {
        b.push(Row::skipped(
            "nginx auth_request -> trivial",
            "nginx not installed",
        ));
        b.push(Row::skipped(
            "nginx auth_request -> portcullis",
            "nginx not installed",
        ));
        return Ok(());
    }
    let row = b.wrk_row(
        "nginx auth_request -> trivial",
        &format!("http://{}/", ports.auth_trivial),
        &[host.into()],
        "",
    )?;
    b.push(row);
    let mut row = b.wrk_row(
        "nginx auth_request -> portcullis",
        &format!("http://{}/", ports.auth_portcullis),
        &[cookie.into(), host.into()],
        "",
    )?;
    row.against(&b.find("nginx auth_request -> trivial"), Some(0.9));
    b.push(row);
    Ok(())
}

/// Latency added over plain Pingora at a fixed rate (coordinated-omission corrected).
fn latency_rows(
    b: &mut Bench,
    plain: SocketAddr,
    gw: SocketAddr,
    token: &str,
) -> Result<(), BoxError> {
    let rate = b.s.rate;
    let base = b.rate_row(
        &format!("plain pingora @{rate}/s"),
        &format!("http://{plain}/"),
        None,
        rate,
    )?;
    let mut ours = b.rate_row(
        &format!("portcullis signed-in @{rate}/s"),
        &format!("http://{gw}/"),
        Some(token),
        rate,
    )?;
    if let (Some(a), Some(p)) = (ours.p99_ms, base.p99_ms) {
        let added = a - p;
        ours.baseline = Some(base.name.clone());
        ours.target = Some("p99 +<= 0.25 ms".into());
        ours.met = Some(added <= 0.25);
        ours.note = format!("p99 added {added:+.3} ms; {}", ours.note);
    }
    b.push(base);
    b.push(ours);
    Ok(())
}

/// Raw argon2id rate on the server core, sign-ins per second, and signed-in p99 during a storm.
fn signin_rows(b: &mut Bench, gw: SocketAddr, config: &str, token: &str) -> Result<(), BoxError> {
    let storm_secs = (b.s.secs * b.s.runs as u64).max(3).to_string();
    eprintln!("measuring: argon2id hashes/s");
    let mut p = b.spawn_self(
        "argon2",
        &b.s.server_cpu.clone(),
        &["argon2", config, &storm_secs],
    )?;
    let out = p.wait_stdout()?;
    let hashes = last_json(&out)?["hashes_per_s"].as_f64();
    b.push(Row {
        rps: hashes,
        note: "configured argon2id cost, one thread on the server core".into(),
        ..Row::new("argon2id hashes/s")
    });

    eprintln!("measuring: sign-ins/s");
    let url = format!("http://{gw}/");
    let conns = b.s.storm_conns.to_string();
    let client = b.s.client_cpu.clone();
    let mut p = b.spawn_self(
        "signins",
        &client,
        &["signins", &url, FLOW, COOKIE, &conns, &storm_secs],
    )?;
    let out = p.wait_stdout()?;
    let v = last_json(&out)?;
    let mut row = Row {
        rps: v["signins_per_s"].as_f64(),
        p50_ms: v["p50_ms"].as_f64(),
        p99_ms: v["p99_ms"].as_f64(),
        p999_ms: v["p999_ms"].as_f64(),
        note: format!(
            "identification + password over the JSON API, {conns} in flight; {} failed{}",
            v["failed"],
            v["last_error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        ..Row::new("sign-ins/s")
    };
    row.against(&b.find("argon2id hashes/s"), Some(0.95));
    b.push(row);

    let rate = b.s.storm_rate;
    let quiet = b.rate_row(
        &format!("signed-in @{rate}/s quiet"),
        &url,
        Some(token),
        rate,
    )?;
    let mut storm = b.spawn_self(
        "signins-bg",
        &client,
        &[
            "signins",
            &url,
            FLOW,
            COOKIE,
            &conns,
            &(b.s.secs * b.s.runs as u64 + 3).to_string(),
        ],
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let mut during = b.rate_row(
        &format!("signed-in @{rate}/s in sign-in storm"),
        &url,
        Some(token),
        rate,
    )?;
    let _ = storm.wait_stdout();
    if let (Some(a), Some(q)) = (during.p99_ms, quiet.p99_ms) {
        during.baseline = Some(quiet.name.clone());
        during.ratio = Some(a / q.max(1e-9));
        during.target = Some("p99 <= 2x quiet".into());
        during.met = Some(a <= 2.0 * q);
        during.note = format!("p99 {:.2}x quiet; {}", a / q.max(1e-9), during.note);
    }
    b.push(quiet);
    b.push(during);
    Ok(())
}

fn last_json(out: &str) -> Result<serde_json::Value, BoxError> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no result in: {out}"))?;
    Ok(serde_json::from_str(line)?)
}
