//! The SMTP side: the real aiosmtpd server as a subprocess, test certificates from rcgen, and
//! a TCP server that accepts and never answers.
#![allow(dead_code)]

use crate::mail::Mail;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SMTP_USER: &str = "mailer";
pub const SMTP_PASSWORD: &str = "s3cret-smtp-pw";

/// How the server protects the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Plain,
    StartTls,
    Implicit,
}

/// Options of one server.
#[derive(Debug, Clone)]
pub struct SmtpOpts {
    pub security: Security,
    /// AUTH with [`SMTP_USER`] / [`SMTP_PASSWORD`], required before MAIL.
    pub auth: bool,
    /// Recipients answered with `550 no such user`.
    pub refuse: Vec<String>,
    /// A fixed port (default: an ephemeral one).
    pub port: Option<u16>,
}

impl SmtpOpts {
    pub fn plain() -> SmtpOpts {
        SmtpOpts {
            security: Security::Plain,
            auth: false,
            refuse: Vec::new(),
            port: None,
        }
    }

    pub fn with(security: Security) -> SmtpOpts {
        SmtpOpts {
            security,
            ..SmtpOpts::plain()
        }
    }
}

/// A CA and a leaf certificate for `localhost` / `127.0.0.1`, as PEM files.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn generate(dir: &Path) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Portcullis email tests CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("sign leaf");

        let certs = Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("smtp-cert.pem"),
            key: dir.join("smtp-key.pem"),
        };
        std::fs::write(&certs.ca, ca.pem()).unwrap();
        std::fs::write(&certs.cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&certs.key, leaf_key.serialize_pem()).unwrap();
        certs
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("support")
        .join("smtp_server.py")
}

/// The aiosmtpd server, killed on drop.
pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    pub opts: SmtpOpts,
    pub certs: Option<Certs>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub async fn start(opts: SmtpOpts) -> SmtpServer {
        tokio::task::spawn_blocking(move || SmtpServer::start_blocking(opts))
            .await
            .unwrap()
    }

    fn start_blocking(opts: SmtpOpts) -> SmtpServer {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-smtp-")
            .tempdir()
            .expect("tempdir");
        let maildir = dir.path().join("mail");
        std::fs::create_dir_all(&maildir).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(script())
            .arg("--dir")
            .arg(&maildir)
            .arg("--port")
            .arg(opts.port.unwrap_or(0).to_string());
        let certs = match opts.security {
            Security::Plain => {
                cmd.args(["--mode", "plain"]);
                None
            }
            Security::StartTls | Security::Implicit => {
                let certs = Certs::generate(dir.path());
                cmd.args([
                    "--mode",
                    if opts.security == Security::StartTls {
                        "starttls"
                    } else {
                        "implicit"
                    },
                ])
                .arg("--cert")
                .arg(&certs.cert)
                .arg("--key")
                .arg(&certs.key);
                Some(certs)
            }
        };
        if opts.auth {
            cmd.arg("--auth")
                .arg(format!("{SMTP_USER}:{SMTP_PASSWORD}"));
        }
        for r in &opts.refuse {
            cmd.arg("--refuse").arg(r);
        }
        let log = std::fs::File::create(dir.path().join("smtp.log")).unwrap();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn python3 tests/support/smtp_server.py (run `bash .ci/setup`)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("the SMTP server did not print `ready` within 30 s");
            }
        };
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(dir.path().join("smtp.log")).unwrap_or_default();
                panic!("the SMTP server did not start (got {line:?}):\n{err}")
            });
        SmtpServer {
            port,
            maildir,
            opts,
            certs,
            child,
            _dir: dir,
        }
    }

    pub fn ca_file(&self) -> &Path {
        &self
            .certs
            .as_ref()
            .expect("a TLS server has certificates")
            .ca
    }

    /// The `[email]` keys pointing at this server (host "localhost" so the certificate name
    /// matches; `ca_file` when it speaks TLS; credentials when it wants AUTH).
    pub fn email_toml(&self) -> String {
        let mut s = format!(
            "host = \"localhost\"\nport = {}\ntimeout = 10\nfrom = \"portcullis@gateway.test\"\n",
            self.port
        );
        match self.opts.security {
            Security::Plain => {}
            Security::StartTls => s.push_str("use_tls = true\n"),
            Security::Implicit => s.push_str("use_ssl = true\n"),
        }
        if let Some(c) = &self.certs {
            s.push_str(&format!(
                "ca_file = {}\n",
                crate::harness::toml_str(&c.ca.display().to_string())
            ));
        }
        if self.opts.auth {
            s.push_str(&format!(
                "username = \"{SMTP_USER}\"\npassword = \"{SMTP_PASSWORD}\"\n"
            ));
            // The stand-in listens on loopback only: a password in the clear goes nowhere.
            if matches!(self.opts.security, Security::Plain) {
                s.push_str("danger_plaintext_password = true\n");
            }
        }
        s
    }

    /// Everything received so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.maildir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                Mail::from_record(&p.display().to_string(), &v)
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        self.messages().len()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} message(s) at the SMTP server, got {} within 15 s",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `n`-th message (1-based), waiting for it.
    pub async fn nth(&self, n: usize) -> Mail {
        self.wait_for(n).await[n - 1].clone()
    }

    /// The last message, once there are at least `n`.
    pub async fn latest(&self, n: usize) -> Mail {
        let all = self.wait_for(n).await;
        all.last().unwrap().clone()
    }

    /// Asserts that no message beyond the first `n` arrived. Nothing to wait for: the gateway
    /// sends before it answers the request that caused the send, and this server stores a
    /// message before it accepts it (`250`), so every message of an answered request is here.
    pub async fn assert_no_more_than(&self, n: usize, what: &str) {
        let all = self.messages();
        assert_eq!(
            all.len(),
            n,
            "{what}: expected {n} message(s) at the SMTP server, got {}: {:?}",
            all.len(),
            all.iter().map(|m| &m.rcpt_tos).collect::<Vec<_>>()
        );
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server that accepts connections and never writes a byte (an SMTP server that hangs
/// before its greeting).
pub struct Silent {
    pub port: u16,
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        Silent {
            port,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}
