//! The `replicas` group: signed-in requests per second and sign-ins per second with sled (one
//! gateway) beside PostgreSQL at one and three replicas, measured the same way.
//!
//! PostgreSQL is the test server the integration tests use (`portcullis::store::pg_test_server`:
//! `initdb` + `postgres` in a temporary directory on a loopback port, stopped when the bench
//! ends). The replicas run one config (only `listen` and the admin socket differ) and share the
//! keys files, as the README's "Running several replicas" says. The load generator spreads its
//! connections over the replicas' ports round-robin: wrk with one thread per replica slot
//! (`LOAD_REPLICA_WRK_THREADS`, 3), thread `i` connecting to replica `i mod n` (a Lua `setup`
//! sets each thread's address); the sign-in generator gives its sign-ins in flight to the
//! replicas the same way (each sign-in's three steps on one replica). The sled and one-replica
//! rows use the same wrk threads, all on the one gateway, so the rows differ only in the
//! servers. Every gateway is pinned to the server CPU like every other row: three replicas
//! share one core here (req/s cannot grow; CPU per request is the figure to compare), and
//! PostgreSQL itself is not pinned. Each PostgreSQL row also counts the database transactions
//! during the measured runs (`pg_stat_database`), which shows that a signed-in request never
//! queries it.

use crate::cpu::{self, Server};
use crate::procs::{free_addr, http_get, wait_http, BoxError, Proc, Wrk};
use crate::{against, gateway_toml, seed, sled_storage, Bench, COOKIE, FLOW, HOST};
use portcullis::config::{Config, PostgresStorage, DATABASE_PASSWORD_ENV};
use portcullis::loadgen::table::Row;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// wrk threads for these rows: one per replica of the largest row, so every replica gets the
/// same share of the connections.
const WRK_THREADS: usize = 3;

/// Every thread to the next replica in the list (`wrk.lookup` of each), then the report.
fn spread_lua(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        r#"
local ports = {{ {} }}
local n = 0
setup = function(thread)
  local port = ports[(n % #ports) + 1]
  n = n + 1
  thread.addr = wrk.lookup("127.0.0.1", port)[1]
end
{}"#,
        list.join(", "),
        crate::procs::WRK_LUA
    )
}

/// One deployment measured: its gateways (pinned), the servers whose CPU is counted.
struct Deployment {
    gateways: Vec<(Proc, SocketAddr)>,
    token: String,
    /// The database, for the transaction count (PostgreSQL rows only).
    pg: Option<PostgresStorage>,
    postgres_pid: Option<u32>,
}

impl Deployment {
    fn servers(&self) -> Vec<Server> {
        let mut s: Vec<Server> = if self.gateways.len() == 1 {
            vec![Server::one("portcullis", self.gateways[0].0.pid())]
        } else {
            self.gateways
                .iter()
                .enumerate()
                .map(|(i, (p, _))| Server::one(&format!("replica {}", i + 1), p.pid()))
                .collect()
        };
        if let Some(pid) = self.postgres_pid {
            s.push(Server::tree("postgres", pid));
        }
        s
    }

    fn ports(&self) -> Vec<u16> {
        self.gateways.iter().map(|(_, a)| a.port()).collect()
    }
}

/// The rows: sled with one gateway, PostgreSQL with one and with three replicas.
pub(crate) fn rows(b: &mut Bench, up: SocketAddr) -> Result<(), BoxError> {
    let mut sled = sled_gateway(b, up)?;
    measure(b, &mut sled, "sled, 1 gateway", None)?;
    drop(sled);

    eprintln!("starting PostgreSQL (the tests' server)");
    let (server_pg, password) = {
        let server = portcullis::store::pg_test_server::server();
        (server, server.password().to_string())
    };
    let postgres_pid = postmaster_pid();
    for n in [1usize, 3] {
        let storage = server_pg.fresh_database();
        let mut d = pg_replicas(b, up, n, storage, &password, postgres_pid)?;
        let label = if n == 1 {
            "postgres, 1 replica".to_string()
        } else {
            format!("postgres, {n} replicas")
        };
        measure(b, &mut d, &label, Some("sled, 1 gateway"))?;
    }
    Ok(())
}

/// The `postgres` process this bench started (the test server's postmaster), for its CPU.
fn postmaster_pid() -> Option<u32> {
    cpu::children(std::process::id()).into_iter().find(|&p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "postgres")
    })
}

/// The signed-in and sign-in rows of one deployment; the PostgreSQL ones judged against the
/// sled rows (reported, no target).
fn measure(
    b: &mut Bench,
    d: &mut Deployment,
    label: &str,
    vs: Option<&str>,
) -> Result<(), BoxError> {
    let ports = d.ports();
    let script = b.dir.join(format!("replicas-{}.lua", ports.len()));
    std::fs::write(&script, spread_lua(&ports))?;
    let wrk = Wrk {
        cpus: b.s.client_cpu.clone(),
        connections: b.s.connections,
        threads: WRK_THREADS,
        script,
    };
    let servers = d.servers();
    let url = format!("http://{}/", d.gateways[0].1);
    let headers = [
        format!("Cookie: {COOKIE}={}", d.token),
        format!("Host: {HOST}"),
    ];
    let per_thread = b.s.connections / WRK_THREADS;
    let spread = format!(
        "{} connections ({per_thread} per wrk thread) over {} gateway(s)",
        per_thread * WRK_THREADS,
        ports.len()
    );
    let name = format!("signed-in, {label}");
    let xacts_before = std::cell::Cell::new(0i64);
    let mut row = b.wrk_row_with(&wrk, &name, &url, &headers, &spread, &servers, &mut || {
        if let Some(pg) = &d.pg {
            xacts_before.set(transactions(pg)?);
        }
        Ok(())
    })?;
    if let Some(pg) = &d.pg {
        // Backends report their counts at most once a second, when idle.
        std::thread::sleep(Duration::from_millis(1500));
        let n = transactions(pg)? - xacts_before.get();
        let requests = row.rps.unwrap_or(0.0) * (b.s.secs * b.s.runs as u64) as f64;
        row.figures.insert(
            "db_transactions_per_request".into(),
            n as f64 / requests.max(1.0),
        );
        row.note = format!(
            "{}; {n} database transactions during ~{requests:.0} requests (every client's, this count's own included)",
            row.note
        );
    }
    if let Some(base) = vs {
        against(&mut row, &b.find(&format!("signed-in, {base}")), None);
    }
    for (p, _) in &mut d.gateways {
        p.check_alive()?;
    }
    b.push(row);

    eprintln!("measuring: sign-ins/s, {label}");
    let urls: Vec<String> = d
        .gateways
        .iter()
        .map(|(_, a)| format!("http://{a}/"))
        .collect();
    let secs = b.s.secs.max(3).to_string();
    let conns = b.s.storm_conns.to_string();
    let client = b.s.client_cpu.clone();
    let runs = crate::helper_runs(
        b,
        &format!("signins-{}", label.replace([' ', ','], "-")),
        &client,
        &["signins", &urls.join(","), FLOW, COOKIE, &conns, &secs],
    )?;
    let failed: u64 = runs.iter().filter_map(|r| r["failed"].as_u64()).sum();
    let last_error = runs
        .iter()
        .find_map(|r| r["last_error"].as_str())
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    let mut row = Row {
        rps: crate::median_of(&runs, "signins_per_s"),
        p50_ms: crate::median_of(&runs, "p50_ms"),
        p99_ms: crate::median_of(&runs, "p99_ms"),
        p999_ms: crate::median_of(&runs, "p999_ms"),
        note: format!(
            "{conns} in flight over {} gateway(s), each sign-in's steps on one; {failed} failed{last_error}",
            ports.len()
        ),
        ..Row::new(format!("sign-ins/s, {label}"))
    };
    if let Some(base) = vs {
        row.against(&b.find(&format!("sign-ins/s, {base}")), None);
    }
    b.push(row);
    Ok(())
}

/// Transactions committed and rolled back in the database so far.
fn transactions(pg: &PostgresStorage) -> Result<i64, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut config: tokio_postgres::Config = pg.url.parse()?;
        if let Some(p) = &pg.password {
            config.password(p.expose().as_bytes());
        }
        let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(conn);
        let db = config.get_dbname().unwrap_or_default().to_string();
        let row = client
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
                &[&db],
            )
            .await?;
        drop(client);
        let _ = driver.await;
        Ok::<i64, BoxError>(row.get(0))
    })
}

/// One gateway on a fresh sled database, signed-in cookie issued.
fn sled_gateway(b: &Bench, up: SocketAddr) -> Result<Deployment, BoxError> {
    let dir = b.dir.join("replicas-sled");
    std::fs::create_dir_all(&dir)?;
    let listen = free_addr()?;
    let toml = gateway_toml(&dir, listen, up, 1, b.s.storm_conns, &sled_storage(&dir));
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, &toml)?;
    let config = Config::from_toml(&toml, &path, std::iter::empty())?;
    let (token, _) = seed::seed(&config, 1)?;
    let gateway = start(b, &path, &dir, listen, &[], "sled-gateway")?;
    check_cookie(listen, &token)?;
    Ok(Deployment {
        gateways: vec![(gateway, listen)],
        token,
        pg: None,
        postgres_pid: None,
    })
}

/// `n` replicas on `storage`, started one after the other (the first writes the keys files the
/// others read), the bench user in the database, a cookie that every replica must accept.
fn pg_replicas(
    b: &Bench,
    up: SocketAddr,
    n: usize,
    storage: PostgresStorage,
    password: &str,
    postgres_pid: Option<u32>,
) -> Result<Deployment, BoxError> {
    let root = b.dir.join(format!("replicas-pg-{n}"));
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared)?;
    // `path` is where keys.json and device-key.json are, shared by the replicas (the state is in
    // PostgreSQL); each replica's own admin socket is in its own directory.
    let storage_toml = format!(
        "backend = \"postgres\"\nurl = \"{}\"\npool_size = 4\npath = \"{}/db\"",
        storage.url,
        shared.display()
    );
    let env = [(DATABASE_PASSWORD_ENV, password)];
    let mut gateways = Vec::with_capacity(n);
    let mut token = String::new();
    for i in 0..n {
        let dir = root.join(format!("replica-{}", i + 1));
        std::fs::create_dir_all(&dir)?;
        let listen = free_addr()?;
        let toml = gateway_toml(&dir, listen, up, 1, b.s.storm_conns, &storage_toml);
        let path = dir.join("portcullis.toml");
        std::fs::write(&path, &toml)?;
        if i == 0 {
            let config = Config::from_toml(
                &toml,
                &path,
                env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            )?;
            token = seed::seed_store(&config)?;
        }
        let name = format!("pg{n}-replica-{}", i + 1);
        gateways.push((start(b, &path, &dir, listen, &env, &name)?, listen));
    }
    for (_, a) in &gateways {
        check_cookie(*a, &token)?;
    }
    Ok(Deployment {
        gateways,
        token,
        pg: Some(storage),
        postgres_pid,
    })
}

/// A gateway pinned to the server CPU, answering ping.
fn start(
    b: &Bench,
    config: &Path,
    dir: &Path,
    listen: SocketAddr,
    env: &[(&str, &str)],
    name: &str,
) -> Result<Proc, BoxError> {
    let mut p = Proc::spawn(
        name,
        &b.s.server_cpu,
        Path::new(env!("CARGO_BIN_EXE_portcullis")),
        &[
            "--config".into(),
            config.display().to_string(),
            "serve".into(),
        ],
        env,
        &dir.join(format!("{name}.log")),
    )?;
    wait_http(listen, HOST, "/.portcullis/ping", Duration::from_secs(120))?;
    p.check_alive()?;
    Ok(p)
}

/// The cookie opens the app on this gateway (a replica that did not share the keys would send
/// it to sign in).
fn check_cookie(addr: SocketAddr, token: &str) -> Result<(), BoxError> {
    let (status, _) = http_get(addr, HOST, "/", &[("Cookie", &format!("{COOKIE}={token}"))])?;
    if status != 200 {
        return Err(format!("the bench's session cookie got {status} on {addr}, not 200").into());
    }
    Ok(())
}
