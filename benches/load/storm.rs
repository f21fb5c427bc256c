//! The sign-in rows: raw argon2id hashes per second with the configured parameters on the
//! server's core, and sign-ins per second through the JSON flow API (identification, then
//! password) with several sign-ins in flight.

use crate::procs::BoxError;
use portcullis::config::Config;
use portcullis::loadgen::{login, Histogram, LoginOptions, Target};
use portcullis::password::PasswordHasherPool;
use portcullis::secret::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Hashes for `secs` on the calling thread; prints `{"hashes_per_s":..}`.
pub(crate) fn argon2_rate(config: &Config, secs: f64) -> Result<(), BoxError> {
    let pool = PasswordHasherPool::new(&config.passwords)?;
    let pw = SecretString::new("a-password-to-hash");
    pool.hash_blocking(&pw)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        pool.hash_blocking(&pw)?;
        n += 1;
    }
    println!(
        "{}",
        serde_json::json!({ "hashes_per_s": n as f64 / start.elapsed().as_secs_f64() })
    );
    Ok(())
}

/// Signs in over and over from `conns` tasks for `secs`; prints rate and latency as JSON.
/// `urls` is one gateway's URL, or several separated by commas (replicas): task `i` signs in
/// on the `i mod n`-th.
pub(crate) fn signins(
    urls: &str,
    flow: &str,
    cookie: &str,
    conns: usize,
    secs: f64,
) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let targets = urls
            .split(',')
            .map(|u| Target::parse(u, None).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let tasks: Vec<_> = (0..conns)
            .map(|i| {
                let target = targets[i % targets.len()].clone();
                let (flow, cookie) = (flow.to_string(), cookie.to_string());
                tokio::spawn(async move {
                    let (mut ok, mut failed, mut hist) = (0u64, 0u64, Histogram::default());
                    let mut last_error = None;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let res = login(
                            &target,
                            LoginOptions {
                                user: crate::seed::USER,
                                password: SecretString::new(crate::seed::PASSWORD),
                                flow: Some(&flow),
                                cookie_name: &cookie,
                            },
                        )
                        .await;
                        match res {
                            Ok(_) => {
                                ok += 1;
                                hist.record(t.elapsed());
                            }
                            Err(e) => {
                                failed += 1;
                                last_error = Some(e.to_string());
                            }
                        }
                    }
                    (ok, failed, hist, last_error)
                })
            })
            .collect();
        let (mut ok, mut failed, mut hist, mut last_error) = (0, 0, Histogram::default(), None);
        for t in tasks {
            let (o, f, h, e) = t.await?;
            ok += o;
            failed += f;
            hist.merge(&h);
            last_error = last_error.or(e);
        }
        let secs = start.elapsed().as_secs_f64();
        let ms = |p| hist.percentile(p).as_secs_f64() * 1e3;
        println!(
            "{}",
            serde_json::json!({
                "signins_per_s": ok as f64 / secs,
                "failed": failed,
                "last_error": last_error,
                "p50_ms": ms(50.0), "p99_ms": ms(99.0), "p999_ms": ms(99.9),
            })
        );
        Ok::<(), BoxError>(())
    })
}
