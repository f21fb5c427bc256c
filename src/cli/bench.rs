//! `portcullis bench`: load an operator's own deployment with a mix of valid, expired and
//! missing session cookies and print the same table as the load bench. It needs no config file
//! and never picks a target by itself: the URL is a required argument.

use crate::loadgen::{
    self, table, LoadError, LoginOptions, Mix, Plan, Progress, Report, Stop, Target,
};
use crate::secret::SecretString;
use clap::Args;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The URL to load, e.g. http://app.example.com:9000/ (plain HTTP).
    pub(crate) url: String,
    /// A valid session cookie's value (or `name=value`).
    #[arg(long, conflicts_with = "login")]
    pub(crate) cookie: Option<String>,
    /// Sign in as this user through the JSON flow API to get a session; the password is read
    /// from stdin (first line) or a hidden prompt.
    #[arg(long, value_name = "USER")]
    pub(crate) login: Option<String>,
    /// The flow slug for --login (default: learnt from the target's 401 answer).
    #[arg(long, value_name = "SLUG")]
    pub(crate) flow: Option<String>,
    /// The session cookie's name.
    #[arg(long, default_value = "portcullis_session")]
    pub(crate) cookie_name: String,
    /// A really expired session cookie for the `expired` share (default: the valid one with
    /// `exp` moved into the past, which the gateway refuses after the same verification work).
    #[arg(long)]
    pub(crate) expired_cookie: Option<String>,
    /// Shares of requests per cookie kind (default: all valid with a cookie, else all missing).
    #[arg(long, value_name = "valid=N,expired=N,missing=N")]
    pub(crate) mix: Option<String>,
    /// Concurrent keep-alive connections.
    #[arg(short, long, default_value_t = 32)]
    pub(crate) connections: usize,
    /// How long to measure, e.g. 10s, 1m (ignored with --requests).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Stop after this many measured requests instead of after --duration.
    #[arg(short = 'n', long)]
    pub(crate) requests: Option<u64>,
    /// Unmeasured warm-up time first.
    #[arg(long, default_value = "1s", value_parser = parse_warmup)]
    pub(crate) warmup: Duration,
    /// Send at this fixed rate (requests per second) instead of as fast as possible; latency
    /// then counts from when each request was due.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Give up on one request after this long (it counts as an error).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Client threads (default: the core count).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Connect to this address instead of resolving the URL's host (the Host header stays).
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) connect: Option<SocketAddr>,
    /// Also write the table as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// Like [`parse_duration`], but `0s` turns the warm-up off.
fn parse_warmup(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}` is not a duration ({e})"))
}

/// Runs the tool; exit code 2 for bad arguments or an unreachable target.
pub(crate) fn run(args: BenchArgs) -> ExitCode {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// The sign-in password: a hidden prompt on a terminal, else the first line of stdin; never
/// from argv, where every user of the machine could read it.
fn read_password(user: &str) -> Result<String, LoadError> {
    use std::io::BufRead;
    let pw = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Password for {user}: "))
            .map_err(|e| LoadError::Usage(format!("cannot read the password: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| LoadError::Usage(format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if pw.is_empty() {
        return Err(LoadError::Usage(
            "--login needs the password on stdin (or a terminal for a prompt)".into(),
        ));
    }
    Ok(pw)
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// `name=value` or a bare value -> the value.
fn cookie_value(s: &str, name: &str) -> String {
    s.trim()
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .unwrap_or(s.trim())
        .to_string()
}

/// Refuses settings that would make the run meaningless, before anything is sent.
fn check_args(args: &BenchArgs) -> Result<(), LoadError> {
    if args.connections == 0 {
        return Err(LoadError::Usage("--connections must be at least 1".into()));
    }
    if args.requests == Some(0) {
        return Err(LoadError::Usage("--requests must be at least 1".into()));
    }
    if args.duration.is_zero() {
        return Err(LoadError::Usage("--duration must be longer than 0s".into()));
    }
    if args.timeout.is_zero() {
        return Err(LoadError::Usage("--timeout must be longer than 0s".into()));
    }
    if let Some(r) = args.rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(LoadError::Usage(format!(
            "--rate {r} is not a positive number of requests per second"
        )));
    }
    Ok(())
}

async fn bench(args: BenchArgs) -> Result<(), LoadError> {
    check_args(&args)?;
    let plan = plan(&args).await?;
    eprintln!("{}", describe(&plan));
    let progress = Arc::new(Progress::default());
    let ticker = tokio::spawn(show_progress(progress.clone(), plan.warmup));
    let report = loadgen::run(&plan, progress).await;
    ticker.abort();
    print_report(&args, &plan, &report?)
}

/// The run the arguments ask for; with `--login`, signs in first to get the valid cookie.
async fn plan(args: &BenchArgs) -> Result<Plan, LoadError> {
    let target = Target::parse(&args.url, args.connect)?;
    let valid = match (&args.cookie, &args.login) {
        (Some(c), _) => Some(cookie_value(c, &args.cookie_name)),
        (None, Some(user)) => {
            let password = read_password(user)?;
            let token = loadgen::login(
                &target,
                LoginOptions {
                    user,
                    password: SecretString::new(password),
                    flow: args.flow.as_deref(),
                    cookie_name: &args.cookie_name,
                },
            )
            .await?;
            eprintln!("signed in as {user}");
            Some(token)
        }
        (None, None) => None,
    };
    let expired = args
        .expired_cookie
        .as_deref()
        .map(|c| cookie_value(c, &args.cookie_name))
        .or_else(|| valid.as_deref().and_then(loadgen::expired_variant));
    let mix = match &args.mix {
        Some(spec) => Mix::parse(spec)?,
        None if valid.is_some() => Mix::parse("valid=100")?,
        None => Mix::parse("missing=100")?,
    };
    Ok(Plan {
        target,
        connections: args.connections,
        stop: args
            .requests
            .map_or(Stop::After(args.duration), Stop::Requests),
        warmup: args.warmup,
        rate: args.rate,
        timeout: args.timeout,
        mix,
        cookie_name: args.cookie_name.clone(),
        valid_cookie: valid,
        expired_cookie: expired,
    })
}

/// The line announcing the run: target, connections, mix, and when it stops.
fn describe(plan: &Plan) -> String {
    let mix = plan.mix;
    format!(
        "loading {} with {} connections, mix valid={} expired={} missing={}, {}",
        plan.target.url,
        plan.connections,
        mix.valid,
        mix.expired,
        mix.missing,
        match (plan.stop, plan.rate) {
            (Stop::After(d), None) =>
                format!("{} as fast as possible", humantime::format_duration(d)),
            (Stop::After(d), Some(r)) => format!("{} at {r} req/s", humantime::format_duration(d)),
            (Stop::Requests(n), None) => format!("{n} requests"),
            (Stop::Requests(n), Some(r)) => format!("{n} requests at {r} req/s"),
        }
    )
}

/// Prints the table and totals, and writes the JSON file when asked.
fn print_report(args: &BenchArgs, plan: &Plan, report: &Report) -> Result<(), LoadError> {
    eprintln!();
    let rows = report.rows();
    println!("{}", table::render(&rows));
    let total = report.total();
    println!(
        "{} requests in {:.2}s, {} connections opened, {} errors",
        total.requests(),
        report.elapsed.as_secs_f64(),
        report.connects,
        total.errors
    );
    if total.requests() == 0 {
        return Err(LoadError::Usage(format!(
            "no request to {} got an answer ({} errors)",
            plan.target.url, total.errors
        )));
    }
    if let Some(path) = &args.json {
        let v = table::to_json(
            &rows,
            serde_json::json!({
                "url": plan.target.url,
                "connections": plan.connections,
                "rate": plan.rate,
                "elapsed_s": report.elapsed.as_secs_f64(),
                "connects": report.connects,
            }),
        );
        std::fs::write(path, format!("{v:#}\n"))
            .map_err(|e| LoadError::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// One status line a second on stderr (rewritten in place on a terminal).
async fn show_progress(p: Arc<Progress>, warmup: Duration) {
    let tty = std::io::stderr().is_terminal();
    if !warmup.is_zero() {
        eprintln!("warming up for {}", humantime::format_duration(warmup));
        tokio::time::sleep(warmup).await;
    }
    let start = Instant::now();
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = p.done.load(Ordering::Relaxed);
        let line = format!(
            "[{:>4.0}s] {done} requests, {} req/s now, {} errors",
            start.elapsed().as_secs_f64(),
            done - last,
            p.errors.load(Ordering::Relaxed)
        );
        last = done;
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}   ")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}
