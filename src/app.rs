//! The composition root: builds the store, keys, engine and pages from the config, and runs
//! them under a Pingora server. Everything else receives its collaborators from here.

use crate::access::Gate;
use crate::admin::{self, Admin};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StageConfig};
use crate::flow::{EmailChannel, Engine, Services, SmsChannel};
use crate::http_client::{HttpClient, HttpError, ReqwestHttpClient};
use crate::notify::{HttpSmsSender, MessageTemplates, NotifyError, SmtpSender};
use crate::password::{PasswordError, PasswordHasherPool};
use crate::portal::Portal;
use crate::proxy::{Gateway, Intake, Served};
use crate::reload::Reloader;
use crate::secret::SecretString;
use crate::session::{SessionError, SessionService};
use crate::socket_activation::{ActivationError, Claimed, InheritedListeners};
use crate::store::{Store, StoreError, User};
use crate::tls::LiveCerts;
use crate::ui::Ui;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why the gateway could not start: each variant names what was being opened or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The database could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing keys could not be loaded or created.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The device key (TOTP secrets' seal) could not be loaded or created.
    #[error(transparent)]
    DeviceKey(#[from] crate::device_key::DeviceKeyError),
    /// The password hashing pool could not be set up with the configured parameters.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The data directory, database or a key file cannot be made owner-only.
    #[error(transparent)]
    Files(#[from] crate::files::FilesError),
    /// The audit file (`[log] audit_file`) cannot be opened.
    #[error("audit file {path}: {source}")]
    AuditFile {
        /// The configured path.
        path: String,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// The admin socket could not be created.
    #[error("admin socket {path}: {source}")]
    AdminSocket {
        /// Where the socket was to be created.
        path: String,
        /// Why it could not be.
        #[source]
        source: std::io::Error,
    },
    /// A stage's e-mail delivery settings are unusable.
    #[error("email settings of stage `{stage}`: {source}")]
    Email {
        /// The stage's name under `[stages]`.
        stage: String,
        /// What is wrong with them.
        #[source]
        source: NotifyError,
    },
    /// A stage's SMS delivery settings are unusable.
    #[error("SMS settings of stage `{stage}`: {source}")]
    Sms {
        /// The stage's name under `[stages]`.
        stage: String,
        /// What is wrong with them.
        #[source]
        source: NotifyError,
    },
    /// The outgoing HTTP client (SMS providers, verifications) could not be built.
    #[error("outgoing HTTP client: {0}")]
    Http(#[from] HttpError),
    /// The global `[email]` settings are unusable.
    #[error("global [email] settings: {0}")]
    GlobalEmail(#[from] NotifyError),
    /// Pingora refused to set the server up.
    #[error("cannot start the server: {0}")]
    Server(String),
    /// A socket handed over by the service manager cannot be used.
    #[error(transparent)]
    Activation(#[from] ActivationError),
    /// A configured listener address cannot be bound.
    #[error("cannot listen on {addr} ({key}): {reason}{hint}")]
    Bind {
        /// The config key naming the address (`server.listen[0]`).
        key: String,
        /// The address.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        reason: std::io::Error,
        /// What to do about it, when there is an obvious fix.
        hint: &'static str,
    },
}

/// Everything a running gateway is made of.
pub struct Parts {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Session issuing and verification, with the signing keys.
    pub sessions: Arc<SessionService>,
    /// The argon2id pool, shared by sign-ins and admin commands.
    pub passwords: PasswordHasherPool,
    /// The one access decision, used by the proxy and every forward-auth endpoint.
    pub gate: Arc<Gate>,
    /// The sign-in pages and flow endpoints.
    pub portal: Arc<Portal>,
    /// What a reload keeps: the parts above that do not come from the config's reloadable
    /// sections.
    core: Core,
}

/// The parts of a running gateway a reload keeps: the database, the session service and its
/// keys, the password pool, the clock, the HTTP client and the device key. Everything else is
/// rebuilt from each config over these ([`Core::assemble`]).
#[derive(Clone)]
pub(crate) struct Core {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sessions: Arc<SessionService>,
    pub(crate) passwords: PasswordHasherPool,
    clock: Arc<dyn Clock>,
    http: Arc<dyn HttpClient>,
    device_key: Arc<crate::device_key::DeviceKey>,
    /// Bans and failure counts: kept across reloads (`[regulation]` needs a restart).
    regulator: Arc<crate::regulation::Regulator>,
}

impl Core {
    /// The config's own parts over this core: the flow engine (carrying on from `previous`,
    /// the running one, on reload), the pages, the access decision and the portal.
    ///
    /// # Errors
    /// [`AppError`] naming a stage whose mail or SMS settings are unusable.
    pub(crate) fn assemble(
        &self,
        config: &Arc<Config>,
        previous: Option<&Engine>,
    ) -> Result<(Arc<Gate>, Arc<Portal>), AppError> {
        let services = Services {
            store: self.store.clone(),
            passwords: Arc::new(self.passwords.clone()),
            clock: self.clock.clone(),
            http: self.http.clone(),
            email: email_channels(config)?,
            sms: sms_channels(config, &self.http)?,
            default_email: Arc::new(EmailChannel {
                sender: Arc::new(SmtpSender::new(&config.email)?),
                subject: "Portcullis sign-in code".into(),
            }),
            templates: Arc::new(MessageTemplates::new(config.ui.templates.clone())),
            site_title: config.ui.site_title.clone(),
            policies: Arc::new(
                crate::policy::Evaluator::default().with_geoip(config.geoip.clone()),
            ),
            device_key: self.device_key.clone(),
            sessions: self.sessions.clone(),
            regulator: self.regulator.clone(),
        };
        let engine = Arc::new(match previous {
            Some(running) => running.reconfigured(config, services),
            None => Engine::new(config, services),
        });
        let ui = Arc::new(Ui::new(&config.ui));
        let gate = Arc::new(Gate::new(config.clone(), self.sessions.clone()));
        let portal = Arc::new(Portal::new(engine, self.sessions.clone(), ui, gate.clone()));
        Ok((gate, portal))
    }
}

impl Parts {
    /// Builds the gateway's parts from a validated config, opening the database and keys.
    ///
    /// # Errors
    /// [`AppError`] naming what could not be opened.
    pub fn build(config: Config) -> Result<Parts, AppError> {
        let config = Arc::new(config);
        let store: Arc<dyn Store> = crate::store::open(&config.storage)?;
        let passwords = PasswordHasherPool::new(&config.passwords)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let http: Arc<dyn HttpClient> = Arc::new(ReqwestHttpClient::new()?);
        let sessions = Arc::new(SessionService::with_clock(
            &config.session,
            config.storage.keys_path.clone(),
            store.clone(),
            clock.clone(),
        )?);
        let core = Core {
            device_key: Arc::new(device_key(&config, store.as_ref())?),
            regulator: regulator(&config, &store, &clock)?,
            store: store.clone(),
            sessions: sessions.clone(),
            passwords: passwords.clone(),
            clock,
            http,
        };
        let (gate, portal) = core.assemble(&config, None)?;
        Ok(Parts {
            config,
            store,
            sessions,
            passwords,
            gate,
            portal,
            core,
        })
    }
}

/// The regulator of `[regulation]`, with the bans in force loaded from `store`.
///
/// # Errors
/// [`AppError`] when the bans cannot be read.
fn regulator(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<crate::regulation::Regulator>, AppError> {
    let r = crate::regulation::Regulator::new(config.regulation, store.clone(), clock.clone())?;
    Ok(Arc::new(r))
}

impl Parts {
    /// The regulator (bans and failure counts); `bans_in_force()` feeds `portcullis_bans`.
    #[must_use]
    pub fn regulator(&self) -> &Arc<crate::regulation::Regulator> {
        &self.portal.engine.services().regulator
    }
}

/// Everything `serve` would build from the config without opening the database or binding a
/// port: the SMTP and SMS senders, the keys file (read, never written), the password hasher.
/// So `check-config` refuses what `serve` would, while a gateway may be running.
///
/// # Errors
/// The first [`AppError`] `serve` would have stopped with.
pub fn check(config: &Config) -> Result<(), AppError> {
    PasswordHasherPool::new(&config.passwords)?;
    SmtpSender::new(&config.email)?;
    email_channels(config)?;
    sms_channels(
        config,
        &(Arc::new(ReqwestHttpClient::new()?) as Arc<dyn HttpClient>),
    )?;
    crate::session::KeyFile::check_existing(&config.storage.keys_path)
        .map_err(SessionError::from)?;
    crate::device_key::DeviceKey::check_existing(&config.storage.device_key_path)?;
    Ok(())
}

/// The device key, created on first start. A missing file while sealed TOTP devices exist is
/// an error naming it (see [`crate::device_key`]), so it is counted first; a file that is not
/// the one the database was first used with is an error naming it too.
fn device_key(
    config: &Config,
    store: &dyn Store,
) -> Result<crate::device_key::DeviceKey, AppError> {
    let path = &config.storage.device_key_path;
    let sealed = if path.exists() {
        0
    } else {
        let mut n = 0;
        for user in store.users()? {
            n += store
                .devices(&user.username)?
                .iter()
                .filter(|d| d.class == crate::store::DeviceClass::Totp)
                .count();
        }
        n
    };
    let key = crate::device_key::DeviceKey::load_or_create(path, sealed)?;
    // Replicas on one database must share the file: a replica with another key refuses.
    key.agree_with_store(path, store)?;
    Ok(key)
}

/// One SMTP channel per email setup or verification stage: its own connection or the global
/// one.
fn email_channels(config: &Config) -> Result<HashMap<String, Arc<EmailChannel>>, AppError> {
    let mut out = HashMap::new();
    for (name, stage) in &config.stages {
        let (smtp, subject) = match stage {
            StageConfig::AuthenticatorEmail(e) => (e.smtp.as_ref(), &e.subject),
            StageConfig::Email(e) => (e.smtp.as_ref(), &e.subject),
            _ => continue,
        };
        let smtp = smtp.unwrap_or(&config.email);
        let sender = SmtpSender::new(smtp).map_err(|err| AppError::Email {
            stage: name.clone(),
            source: err,
        })?;
        out.insert(
            name.clone(),
            Arc::new(EmailChannel {
                sender: Arc::new(sender),
                subject: subject.clone(),
            }),
        );
    }
    Ok(out)
}

/// One SMS channel per SMS setup stage, each sending over `http`.
fn sms_channels(
    config: &Config,
    http: &Arc<dyn HttpClient>,
) -> Result<HashMap<String, Arc<SmsChannel>>, AppError> {
    let mut out = HashMap::new();
    for (name, stage) in &config.stages {
        if let StageConfig::AuthenticatorSms(s) = stage {
            let sender = HttpSmsSender::new(
                s.provider.clone(),
                s.from_number.clone(),
                s.mapping.clone(),
                s.timeout,
                config.ui.site_title.clone(),
                http.clone(),
            )
            .map_err(|err| AppError::Sms {
                stage: name.clone(),
                source: err,
            })?;
            out.insert(
                name.clone(),
                Arc::new(SmsChannel {
                    sender: Arc::new(sender),
                    limits: s.limits.clone(),
                }),
            );
        }
    }
    Ok(out)
}

/// Runs the gateway until it is stopped, serving on the `inherited` sockets (socket activation)
/// where they are bound to configured addresses and binding the others itself. Does not return
/// on success.
///
/// # Errors
/// [`AppError`] when something needed at start is missing or unusable, including an inherited
/// socket that matches no configured listener.
pub fn serve(config: Config, inherited: InheritedListeners) -> Result<(), AppError> {
    // Before anything is created: a handed-over socket nobody configured, or an address that
    // cannot be bound, ends the start here (Pingora would retry a busy address forever).
    let configured: Vec<_> = config
        .server
        .listen
        .iter()
        .chain(&config.server.tls_listen)
        .copied()
        .collect();
    let handed = inherited.claim(&configured)?;
    check_listeners(&config.server, config.metrics.listen, &handed)?;
    apply_log_settings(&config)?;
    raise_fd_limit();
    // Before the database is opened and again after (for the files it created).
    crate::files::secure(&config)?;
    let parts = Parts::build(config)?;
    crate::files::secure(&parts.config)?;
    // Every replica's audit records in the store, written off the request path.
    crate::audit::set_store(Some(parts.store.clone()))
        .map_err(|e| AppError::Server(format!("starting the audit store writer: {e}")))?;
    bootstrap_admin(&parts)?;

    let served = Arc::new(arc_swap::ArcSwap::from_pointee(Served::new(
        parts.gate.clone(),
        parts.portal.clone(),
    )));
    let certs = live_certs(&parts.config)?;
    let reloader = Arc::new(Reloader::new(
        parts.config.clone(),
        parts.core.clone(),
        served.clone(),
        certs.clone(),
    ));
    start_admin_socket(&parts, Some(reloader.clone()))?;
    spawn_maintenance(Maintenance::new(
        parts.store.clone(),
        parts.sessions.clone(),
        parts.regulator().clone(),
        parts.config.storage.purge_interval,
        std::time::Instant::now(),
    ));
    // Other replicas' revocations and bans, heard as they are made (PostgreSQL); kept until
    // the process ends.
    let _feed = crate::replicas::Replica::watch(
        parts.store.as_ref(),
        parts.sessions.clone(),
        parts.regulator().clone(),
    )?;
    spawn_key_refresh(parts.sessions.clone());
    let outbox = reloader.clone();
    spawn_outbox(move || outbox.engine());
    // What the start-up scans (the integrity check, the revocation list) freed goes back
    // before the first request, not a second later.
    crate::memory::release_now();
    crate::memory::spawn_releaser();
    crate::reload::on_sighup(reloader).map_err(|e| AppError::Server(e.to_string()))?;

    let cfg = &parts.config;
    let mut server = Server::new_with_opt_and_conf(None, server_conf(cfg));
    server.bootstrap();
    let service = proxy_service(&server, &parts, served, certs)?;
    let inherited = handed.len();
    server.add_service(handed.serve_with(service));
    add_ops_services(&mut server, &parts);
    tracing::info!(
        listen = ?cfg.server.listen,
        tls_listen = ?cfg.server.tls_listen,
        inherited,
        apps = cfg.apps.len(),
        config = %cfg.source.display(),
        database = %cfg.storage.path.display(),
        metrics = ?cfg.metrics.listen,
        "portcullis is running"
    );
    server.run(pingora::server::RunArgs::default());
    // A fast shutdown (SIGINT) ends here; a graceful one (SIGTERM) ends in `ops::Lifecycle`.
    crate::ops::finish(&parts.sessions, parts.store.as_ref());
    std::process::exit(0)
}

/// The services around the proxy: the `[metrics] listen` admin listener when configured, and
/// the lifecycle (readiness notification, graceful drain, last writes at shutdown).
fn add_ops_services(server: &mut Server, parts: &Parts) {
    let cfg = &parts.config;
    if let Some(addr) = cfg.metrics.listen {
        let mut metrics = pingora::services::listening::Service::new(
            "portcullis metrics".into(),
            crate::ops::MetricsApp::new(parts.store.clone()),
        );
        metrics.threads = Some(1);
        metrics.add_tcp(&addr.to_string());
        server.add_service(metrics);
    }
    server.add_service(pingora::services::background::background_service(
        "portcullis lifecycle",
        crate::ops::Lifecycle {
            sessions: parts.sessions.clone(),
            store: parts.store.clone(),
            drain: cfg.server.drain_timeout,
        },
    ));
}

/// Applies `[log]`: the stderr format and the audit file.
///
/// # Errors
/// [`AppError::AuditFile`] when the audit file cannot be opened.
fn apply_log_settings(config: &Config) -> Result<(), AppError> {
    crate::logging::set_format(config.log.format);
    let file = config.log.audit_file.as_deref();
    crate::audit::set_file(file).map_err(|source| AppError::AuditFile {
        path: file.map(|p| p.display().to_string()).unwrap_or_default(),
        source,
    })
}

/// Opens the admin socket the CLI's user commands talk to while the gateway holds the database.
///
/// # Errors
/// [`AppError::AdminSocket`] when the socket cannot be created.
fn start_admin_socket(parts: &Parts, reloader: Option<Arc<Reloader>>) -> Result<(), AppError> {
    let admin = Arc::new(Admin {
        store: parts.store.clone(),
        passwords: parts.passwords.clone(),
        sessions: Some(parts.sessions.clone()),
        policy: parts.config.password_policy,
        clock: parts.sessions.clock().clone(),
        reloader,
        regulator: Some(parts.regulator().clone()),
    });
    let socket = parts.config.admin_socket.clone();
    admin::serve_socket(&socket, admin).map_err(|source| AppError::AdminSocket {
        path: socket.display().to_string(),
        source,
    })
}

/// Pingora's settings: worker threads (0 means one per core), the grace period of a graceful
/// shutdown (`[server] drain_timeout`, which [`crate::ops::Lifecycle`] ends early once no
/// request is in flight), the upstream connection pool and the CA file upstream certificates
/// are checked against.
fn server_conf(cfg: &Config) -> ServerConf {
    let threads = match cfg.server.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let mut conf = ServerConf {
        threads,
        // Pingora waits this long after SIGTERM before stopping its runtimes (which cuts the
        // requests still running); the lifecycle service exits sooner once they are done.
        grace_period_seconds: Some(cfg.server.drain_timeout.as_secs().max(1) + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 256;
    conf.ca_file = cfg
        .server
        .upstream_ca_file
        .as_ref()
        .map(|p| p.display().to_string());
    conf
}

/// The proxy service with every `listen` (plain) and `tls_listen` (TLS with SNI, HTTP/2)
/// address added.
///
/// # Errors
/// [`AppError::Server`] when the certificates or TLS settings cannot be loaded.
fn proxy_service(
    server: &Server,
    parts: &Parts,
    served: Arc<arc_swap::ArcSwap<Served>>,
    certs: Option<Arc<LiveCerts>>,
) -> Result<
    pingora::services::listening::Service<Intake<pingora::proxy::HttpProxy<Gateway>>>,
    AppError,
> {
    let cfg = &parts.config;
    let proxy = pingora::proxy::http_proxy(&server.configuration, Gateway::new(served.clone()));
    // The answer-only endpoints (forward-auth, ping, health, ready) are answered by the intake
    // itself, from the same live configuration.
    let intake = Intake::new(
        proxy,
        cfg.server.clients,
        cfg.server.trusted_proxies.clone(),
    )
    .answering(served);
    let mut service = pingora::services::listening::Service::new("portcullis".into(), intake);
    for addr in &cfg.server.listen {
        service.add_tcp(&addr.to_string());
    }
    let Some(resolver) = certs.filter(|_| !cfg.server.tls_listen.is_empty()) else {
        return Ok(service);
    };
    for addr in &cfg.server.tls_listen {
        let mut settings =
            pingora::listeners::tls::TlsSettings::with_callbacks(Box::new(NoCallbacks))
                .map_err(|e| AppError::Server(e.to_string()))?;
        settings.set_cert_resolver(resolver.clone());
        settings.enable_h2();
        service.add_tls_with_settings(&addr.to_string(), None, settings);
    }
    Ok(service)
}

/// The certificates the TLS listeners serve, replaceable by a reload; `None` without
/// `tls_listen`.
///
/// # Errors
/// [`AppError::Server`] when a certificate's key cannot be read or used.
fn live_certs(cfg: &Config) -> Result<Option<Arc<LiveCerts>>, AppError> {
    if cfg.server.tls_listen.is_empty() {
        return Ok(None);
    }
    let first = crate::tls::SniResolver::new(&cfg.server.certificates)
        .map_err(|e| AppError::Server(e.to_string()))?;
    Ok(Some(Arc::new(LiveCerts::new(first))))
}

/// Binds every `listen` and `tls_listen` address that was not `handed` over once, all at the
/// same time (so an address listed twice is caught too), and lets them go again for Pingora to
/// bind.
///
/// # Errors
/// [`AppError::Bind`] naming the first address that cannot be bound, its key and the reason.
fn check_listeners(
    server: &crate::config::ServerConfig,
    metrics: Option<std::net::SocketAddr>,
    handed: &Claimed,
) -> Result<(), AppError> {
    let mut held = Vec::new();
    let mut handed_seen = std::collections::HashSet::new();
    let metrics: Vec<_> = metrics.into_iter().collect();
    for (key, addrs) in [
        ("server.listen", &server.listen),
        ("server.tls_listen", &server.tls_listen),
        ("metrics.listen", &metrics),
    ] {
        for (i, addr) in addrs.iter().enumerate() {
            if handed.contains(addr) {
                // Served on the handed-over socket: nothing to bind, but only once.
                if handed_seen.insert(*addr) {
                    continue;
                }
                return Err(AppError::Bind {
                    key: indexed(key, i),
                    addr: *addr,
                    reason: std::io::ErrorKind::AddrInUse.into(),
                    hint: " (another entry of this config listens there)",
                });
            }
            match std::net::TcpListener::bind(addr) {
                Ok(l) => held.push(l),
                Err(reason) => {
                    let hint = match reason.kind() {
                        std::io::ErrorKind::AddrInUse => {
                            " (another process, or another entry of this config, listens there)"
                        }
                        std::io::ErrorKind::AddrNotAvailable => " (not an address of this machine)",
                        std::io::ErrorKind::PermissionDenied => {
                            " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                        }
                        _ => "",
                    };
                    return Err(AppError::Bind {
                        key: indexed(key, i),
                        addr: *addr,
                        reason,
                        hint,
                    });
                }
            }
        }
    }
    drop(held);
    Ok(())
}

/// The config key of entry `i` of `key`: `server.listen[0]`; `metrics.listen` is one address.
fn indexed(key: &str, i: usize) -> String {
    if key == "metrics.listen" {
        key.to_string()
    } else {
        format!("{key}[{i}]")
    }
}

/// Raises this process's open-files limit (`RLIMIT_NOFILE`) to its hard limit, and logs the
/// limit it runs with: every client connection holds a descriptor, and the usual soft limit of
/// 1024 is a few hundred slow clients away from refusing everyone.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    // An unlimited hard limit still stops at the kernel's per-process maximum.
    let ceiling = before.maximum.or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse().ok())
    });
    if let (Some(soft), Some(hard)) = (before.current, ceiling) {
        if soft < hard {
            let raised = Rlimit {
                current: Some(hard),
                maximum: before.maximum,
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-files limit");
            }
        }
    }
    let now = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    tracing::info!(
        soft = %show(now.current),
        hard = %show(now.maximum),
        "open-files limit (each client connection holds one)"
    );
}

/// Pingora's TLS settings constructor wants handshake callbacks; we need none.
struct NoCallbacks;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for NoCallbacks {}

/// On the very first start there is nobody who could sign in: create `admin` with a random
/// password and print it once, so the operator can get in and change it.
fn bootstrap_admin(parts: &Parts) -> Result<(), AppError> {
    if parts.store.user_count()? > 0 {
        return Ok(());
    }
    let password = crate::secret::random_token(15);
    let mut user = User::new("admin", parts.sessions.clock().now());
    user.name = "Administrator".into();
    user.groups = vec!["admins".into()];
    user.password_hash = Some(
        parts
            .passwords
            .hash_blocking(&SecretString::new(password.clone()))?,
    );
    // Replicas starting together on one empty database: one creates `admin`, and only its
    // password is shown (a plain write would let each overwrite it with its own).
    if !parts.store.create_user(&user)? {
        return Ok(());
    }
    tracing::warn!(
        "created the first user: username=admin password={password} (shown only now; change it with `portcullis user passwd admin`)"
    );
    Ok(())
}

/// Delivers queued mail (the `email` stage's) on a thread of its own, off the request path:
/// a mail server that stalls holds no request worker. Messages queued before a restart go out
/// at once.
/// The engine is whichever `current` returns at each round, so a reload's mail settings apply.
fn spawn_outbox(current: impl Fn() -> Arc<Engine> + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("portcullis-outbox".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(Engine::run_outbox_of(current)),
                Err(e) => tracing::error!(error = %e, "could not start the outbox; queued mail is not delivered"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the outbox thread; queued mail is not delivered");
    }
}

/// How often in-memory revocations are pruned and the bans gauge is set (and at most how long
/// the maintenance thread sleeps).
const MAINTENANCE_TICK: Duration = Duration::from_secs(60);
/// How often the sessions' last-seen times are written.
const SEEN_FLUSH_EVERY: Duration = Duration::from_secs(300);

/// Reads the shared key set every [`crate::session::KEYS_REFRESH_EVERY`], so a rotation on
/// another replica (and the retirement it makes) is in force here within that time, even
/// before a token names the new key. Off the request path.
fn spawn_key_refresh(sessions: Arc<SessionService>) {
    let spawned = std::thread::Builder::new()
        .name("portcullis-keys".into())
        .spawn(move || loop {
            std::thread::sleep(crate::session::KEYS_REFRESH_EVERY);
            if let Err(e) = sessions.refresh_keys() {
                tracing::warn!(error = %e, "reading the shared session keys failed; the current ones stay in force");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the key refresh thread; keys rotated elsewhere are picked up when a token names them");
    }
}

/// The maintenance thread's work, off the request path: purges expired records every
/// `[storage] purge_interval`, prunes in-memory revocations and sets the bans gauge every
/// [`MAINTENANCE_TICK`] (or `purge_interval` when shorter), and writes the sessions'
/// last-seen times every [`SEEN_FLUSH_EVERY`]. One task for every backend.
pub(crate) struct Maintenance {
    store: Arc<dyn Store>,
    sessions: Arc<SessionService>,
    regulator: Arc<crate::regulation::Regulator>,
    purge_every: Duration,
    next_purge: std::time::Instant,
    next_flush: std::time::Instant,
}

impl Maintenance {
    /// The work, starting at `start`: the first purge one `purge_every` later.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        sessions: Arc<SessionService>,
        regulator: Arc<crate::regulation::Regulator>,
        purge_every: Duration,
        start: std::time::Instant,
    ) -> Self {
        Self {
            store,
            sessions,
            regulator,
            purge_every,
            next_purge: start + purge_every,
            next_flush: start + SEEN_FLUSH_EVERY,
        }
    }

    /// How long the thread sleeps between rounds.
    pub(crate) fn tick(&self) -> Duration {
        self.purge_every.min(MAINTENANCE_TICK)
    }

    /// One round at `at`: whatever is due. Returns how many records the store purged, when
    /// a purge was due (0 also when another replica holds the purge).
    pub(crate) fn round(&mut self, at: std::time::Instant) -> Option<usize> {
        let mut purged = None;
        if at >= self.next_purge {
            self.next_purge = at + self.purge_every;
            purged = match self.store.purge_expired(self.sessions.clock().now()) {
                Ok(n) => {
                    tracing::debug!(purged = n, "expired records purged");
                    Some(n)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging expired records failed");
                    Some(0)
                }
            };
        }
        self.sessions.prune();
        self.regulator.publish();
        // "Last seen" lives in memory; the store hears of it every few minutes.
        if at >= self.next_flush {
            self.next_flush = at + SEEN_FLUSH_EVERY;
            if let Err(e) = self.sessions.flush_seen() {
                tracing::warn!(error = %e, "recording when sessions were last seen failed");
            }
        }
        purged
    }
}

/// Runs [`Maintenance`] on a thread of its own for as long as the gateway runs.
fn spawn_maintenance(mut work: Maintenance) {
    work.regulator.publish();
    let spawned = std::thread::Builder::new()
        .name("portcullis-maintenance".into())
        .spawn(move || loop {
            std::thread::sleep(work.tick());
            work.round(std::time::Instant::now());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the maintenance thread; expired records stay until restart");
    }
}
