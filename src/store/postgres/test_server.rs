//! A real PostgreSQL for the tests, started by the tests themselves: `initdb` and `postgres`
//! from Debian's `postgresql` package (`.ci/setup` installs it), in a temporary directory, on a
//! free loopback port, as an unprivileged user (PostgreSQL refuses to run as root: as root the
//! server runs as the `postgres` account the package makes, else `nobody`). One server per
//! test process, started on first use; each test gets a fresh database on it.
//!
//! Nothing is skipped: without PostgreSQL the tests fail, saying what to install. A watchdog
//! (`sh`) stops the server and removes its directory once the test process is gone.
//!
//! Public (hidden from the docs) so that the integration tests and the benches start their
//! replicas' database the same way.
//!
//! `PORTCULLIS_PG_BIN` names the folder of `initdb` and `postgres` when they are elsewhere.

use crate::config::PostgresStorage;
use crate::secret::Secret;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser the tests connect as.
const USER: &str = "portcullis";

/// The running test server.
pub struct TestServer {
    port: u16,
    password: String,
    next: AtomicUsize,
    /// The CA the server's certificate (for `localhost` and 127.0.0.1) is signed by.
    ca_file: PathBuf,
    /// How to start the postmaster again on the same port and data directory.
    launch: Launch,
    /// The running postmaster; `None` while [`TestServer::stop`] has it stopped.
    postmaster: Mutex<Option<Child>>,
}

/// What starting the postmaster takes.
struct Launch {
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();

/// The test process's server, started on first use.
///
/// # Panics
/// When PostgreSQL is not installed or does not start: the message says why and what to do.
pub fn server() -> &'static TestServer {
    SERVER.get_or_init(|| TestServer::start().unwrap_or_else(|e| panic!("{e}")))
}

/// A server of the caller's own, for a test that stops and restarts it ([`TestServer::stop`],
/// [`TestServer::start_again`]) while other tests of the process use [`server`]. Stopped
/// and removed when dropped.
///
/// # Panics
/// As [`server`].
pub fn dedicated() -> TestServer {
    TestServer::start().unwrap_or_else(|e| panic!("{e}"))
}

impl TestServer {
    fn start() -> Result<Self, String> {
        let bin = bin_dir()?;
        let owner = unprivileged_user()?;
        let root = std::env::temp_dir().join(format!(
            "portcullis-pg-{}-{}",
            std::process::id(),
            crate::secret::random_token(6)
        ));
        std::fs::create_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let data = root.join("data");
        std::fs::create_dir(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let password = crate::secret::random_token(18);
        let pwfile = root.join("pw");
        {
            // The superuser's password: readable by its owner only, and gone after initdb.
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pwfile)
                .and_then(|mut f| f.write_all(password.as_bytes()))
                .map_err(|e| format!("{}: {e}", pwfile.display()))?;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            let open = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(&root, open).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
        }
        if let Some((uid, gid)) = owner {
            for p in [&data, &pwfile] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let as_owner = |program: &Path| {
            let mut cmd = Command::new(program);
            cmd.current_dir(&root).stdin(Stdio::null());
            cmd.env_remove("PGDATA").env_remove("PGPORT");
            if let Some((uid, gid)) = owner {
                use std::os::unix::process::CommandExt;
                cmd.uid(uid).gid(gid);
            }
            cmd
        };
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--no-sync",
                "--no-locale",
            ])
            .args(["-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin.join("initdb").display()));
        let _ = std::fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // TLS on, for the tests that ask for it (others connect in the clear, as allowed).
        let ca_file = root.join("ca.pem");
        let (cert, key) = (data.join("server.crt"), data.join("server.key"));
        certificates(&ca_file, &cert, &key)?;
        if let Some((uid, gid)) = owner {
            for p in [&cert, &key] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let launch = Launch {
            bin,
            owner,
            log: root.join("postgres.log"),
            root,
            data,
        };
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = free_port()?;
            match launch.run(port) {
                Ok(child) => {
                    return Ok(Self {
                        port,
                        password,
                        next: AtomicUsize::new(0),
                        ca_file,
                        launch,
                        postmaster: Mutex::new(Some(child)),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Stops the postmaster the way an operator's `pg_ctl stop -m fast` does (SIGINT: open
    /// connections are cut, no new ones are accepted) and waits until it has exited. The data
    /// stays; [`TestServer::start_again`] brings it back on the same port.
    ///
    /// # Panics
    /// When it does not exit within 30 s.
    pub fn stop(&self) {
        let mut postmaster = self.postmaster.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = postmaster.take() else {
            return;
        };
        signal(child.id(), "-INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("postgres did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the postmaster again on the same port and data directory after
    /// [`TestServer::stop`]; returns once it accepts connections.
    ///
    /// # Panics
    /// When it does not start (the message holds the server's log).
    pub fn start_again(&self) {
        let mut postmaster = self.postmaster.lock().unwrap_or_else(|e| e.into_inner());
        assert!(postmaster.is_none(), "postgres is already running");
        // The port was free a moment ago; a test's own connection attempts cannot hold it.
        let child = self.launch.run(self.port).unwrap_or_else(|e| panic!("{e}"));
        *postmaster = Some(child);
    }

    /// Whether the postmaster is running (not stopped by [`TestServer::stop`]).
    pub fn is_running(&self) -> bool {
        let mut postmaster = self.postmaster.lock().unwrap_or_else(|e| e.into_inner());
        postmaster
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The settings of a database on this server, as `[storage]` would give them.
    pub fn storage(&self, database: &str) -> PostgresStorage {
        PostgresStorage {
            url: format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port),
            password: Some(Secret::new(self.password.clone())),
            pool_size: 8,
            tls: false,
            ca_file: None,
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (what `PORTCULLIS_DATABASE_PASSWORD` must hold for a gateway
    /// started on a database of this server).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The CA file that verifies the server's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A new, empty database; its settings.
    pub fn fresh_database(&self) -> PostgresStorage {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        self.admin(&format!("CREATE DATABASE {name} TEMPLATE template0"));
        self.storage(&name)
    }

    /// Runs `sql` as the superuser on the `postgres` database.
    ///
    /// # Panics
    /// When it fails.
    pub fn admin(&self, sql: &str) {
        let config = self.storage("postgres");
        let url = config.url.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut pg: tokio_postgres::Config = url.parse().expect("url");
            pg.password(self.password.as_bytes());
            let (client, conn) = pg.connect(tokio_postgres::NoTls).await.expect("connect");
            let driver = tokio::spawn(conn);
            client.batch_execute(sql).await.expect(sql);
            drop(client);
            let _ = driver.await;
        });
    }
}

impl Launch {
    /// Runs the postmaster on `port` and waits until it accepts connections (60 s at most).
    fn run(&self, port: u16) -> Result<Child, String> {
        let log_file = std::fs::File::create(&self.log).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::chown(&self.log, Some(uid), Some(gid));
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd.env_remove("PGDATA").env_remove("PGPORT");
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd
            .arg("-D")
            .arg(&self.data)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=300"])
            .args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt"])
            .args(["-c", "ssl_key_file=server.key"])
            // A test database need not survive a crash of the machine.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join("postgres").display()))?;
        watch(child.id(), &self.root);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && std::fs::read_to_string(&self.log)
                    .unwrap_or_default()
                    .contains("ready to accept connections")
            {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "postgres did not start in 60 s: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestServer {
    /// A [`dedicated`] server goes with its test (the process's shared one is never dropped:
    /// its watchdog stops it).
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.launch.root);
    }
}

/// `kill SIGNAL pid`.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A CA (written to `ca_file`) and a server certificate for `localhost` and 127.0.0.1 signed
/// by it (`cert`, `key`: the key mode 0600, as PostgreSQL demands).
fn certificates(ca_file: &Path, cert: &Path, key: &Path) -> Result<(), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    use std::os::unix::fs::PermissionsExt;
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Portcullis PostgreSQL tests CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let leaf_key = KeyPair::generate().map_err(e)?;
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(e)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).map_err(e)?;
    std::fs::write(ca_file, ca.pem()).map_err(|e| e.to_string())?;
    std::fs::write(cert, format!("{}{}", leaf.pem(), ca.pem())).map_err(|e| e.to_string())?;
    std::fs::write(key, leaf_key.serialize_pem()).map_err(|e| e.to_string())?;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())
}

/// A port nothing listens on now (the server retries with another should it be taken first).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Stops the server `pid` and removes `dir` once this test process has ended.
fn watch(pid: u32, dir: &Path) {
    // Until the test process or this postmaster is gone (a stop for a restart ends the
    // postmaster and this watchdog; the next start has its own); the folder goes only with the
    // test process.
    let script = r#"while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 0.5; done
kill -0 "$1" 2>/dev/null && exit 0
kill -INT "$2" 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$2" 2>/dev/null || break; sleep 0.5; done
kill -KILL "$2" 2>/dev/null
rm -rf "$3""#;
    let _ = Command::new("sh")
        .args(["-c", script, "portcullis-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Where `initdb` and `postgres` are: `PORTCULLIS_PG_BIN`, Debian's newest
/// `/usr/lib/postgresql/N/bin`, or the `PATH`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PORTCULLIS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .ok_or_else(|| {
            "PostgreSQL is not installed: the PostgreSQL backend's tests start a real server. \
             Run .ci/setup (apt-get install postgresql), or set PORTCULLIS_PG_BIN to the \
             folder of initdb and postgres"
                .to_string()
        })
}

/// As root, the account the server runs as (uid, gid): `postgres` when the package made it,
/// else `nobody`. `None` when the tests do not run as root: the server runs as the tester.
fn unprivileged_user() -> Result<Option<(u32, u32)>, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok())
        .ok_or("cannot read this process's user id")?;
    if euid != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    let entry = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name) && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    };
    entry("postgres")
        .or_else(|| entry("nobody"))
        .map(Some)
        .ok_or_else(|| "running as root, and neither a postgres nor a nobody account exists: PostgreSQL refuses to run as root".to_string())
}
