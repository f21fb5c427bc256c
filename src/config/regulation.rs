//! `[regulation]`: how failed sign-in attempts are limited, as Authelia's section of that name
//! (`max_retries`, `find_time`, `ban_time`, `modes`), plus the account-wide hard lock NIST
//! SP 800-63B 5.2.2 allows after at most 100 consecutive failures.

use super::error::Problem;
use serde::Deserialize;
use std::time::Duration;

type Checked<T> = Result<T, Problem>;

/// `[regulation]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegulation {
    /// Failures within `find_time` before a ban; 0 turns regulation off (default 3).
    pub max_retries: Option<u32>,
    /// The sliding window failures are counted in (default 2m).
    pub find_time: Option<String>,
    /// How long a ban lasts (default 5m).
    pub ban_time: Option<String>,
    /// Who is banned: `user` (an account from one address) and/or `ip` (an address);
    /// default both.
    pub modes: Option<Vec<String>>,
    /// Consecutive failures on one account, from anywhere, before it is locked until an
    /// operator lifts the lock (default and maximum 100).
    pub lock_after: Option<u32>,
}

/// `[regulation]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regulation {
    /// Failures within `find_time` before a ban; 0: regulation is off.
    pub max_retries: u32,
    /// The sliding window failures are counted in.
    pub find_time: Duration,
    /// How long a ban lasts; also the longest slow-down of an account.
    pub ban_time: Duration,
    /// Bans of an account from one client address (`user` mode).
    pub user: bool,
    /// Bans of a client address (`ip` mode).
    pub ip: bool,
    /// Consecutive failures on one account before it is locked (1..=100).
    pub lock_after: u32,
}

/// NIST SP 800-63B 5.2.2: no more than 100 consecutive failed attempts on one account.
pub const NIST_MAX_CONSECUTIVE: u32 = 100;

impl Default for Regulation {
    fn default() -> Self {
        Self {
            max_retries: 3,
            find_time: Duration::from_secs(120),
            ban_time: Duration::from_secs(300),
            user: true,
            ip: true,
            lock_after: NIST_MAX_CONSECUTIVE,
        }
    }
}

impl Regulation {
    /// Regulation turned off (`max_retries = 0`).
    #[must_use]
    pub fn off() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Whether failures are counted at all.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.max_retries > 0
    }
}

/// Checks `[regulation]`.
pub(super) fn regulation(raw: &RawRegulation) -> Checked<Regulation> {
    let d = Regulation::default();
    let duration = |key: &str, v: &Option<String>, default: Duration| -> Checked<Duration> {
        match v {
            None => Ok(default),
            Some(t) => {
                super::duration::parse(t).map_err(|e| Problem::new(format!("regulation.{key}"), e))
            }
        }
    };
    let (mut user, mut ip) = (d.user, d.ip);
    if let Some(modes) = &raw.modes {
        if modes.is_empty() {
            return Err(Problem::new(
                "regulation.modes",
                "name at least one of \"user\" and \"ip\" (set max_retries = 0 to turn regulation off)",
            ));
        }
        (user, ip) = (false, false);
        for m in modes {
            match m.as_str() {
                "user" => user = true,
                "ip" => ip = true,
                other => {
                    return Err(Problem::new(
                        "regulation.modes",
                        format!(
                            "unknown mode `{}`: use \"user\" and/or \"ip\"",
                            other.escape_debug()
                        ),
                    ))
                }
            }
        }
    }
    let lock_after = raw.lock_after.unwrap_or(d.lock_after);
    if lock_after == 0 || lock_after > NIST_MAX_CONSECUTIVE {
        return Err(Problem::new(
            "regulation.lock_after",
            format!(
                "must be 1 to {NIST_MAX_CONSECUTIVE} (NIST SP 800-63B allows at most {NIST_MAX_CONSECUTIVE} consecutive failures)"
            ),
        ));
    }
    Ok(Regulation {
        max_retries: raw.max_retries.unwrap_or(d.max_retries),
        find_time: duration("find_time", &raw.find_time, d.find_time)?,
        ban_time: duration("ban_time", &raw.ban_time, d.ban_time)?,
        user,
        ip,
        lock_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Regulation, String> {
        let raw: RawRegulation = toml::from_str(toml_text).expect("toml");
        regulation(&raw).map_err(|p| p.path)
    }

    #[test]
    fn regulation_is_on_by_default_with_authelias_values_and_both_modes() {
        let r = parse("").expect("defaults");
        assert_eq!(r, Regulation::default());
        assert!(r.enabled() && r.user && r.ip);
        assert_eq!(
            (r.max_retries, r.find_time.as_secs(), r.ban_time.as_secs()),
            (3, 120, 300)
        );
        assert_eq!(r.lock_after, 100);
    }

    #[test]
    fn keys_are_read_and_bad_values_are_refused_naming_the_key() {
        let r = parse("max_retries = 5\nfind_time = \"10m\"\nban_time = \"1h\"\nmodes = [\"ip\"]\nlock_after = 50")
            .expect("valid");
        assert_eq!(
            (r.max_retries, r.find_time.as_secs(), r.ban_time.as_secs()),
            (5, 600, 3600)
        );
        assert!(r.ip && !r.user);
        assert_eq!(r.lock_after, 50);
        assert!(!parse("max_retries = 0").expect("off").enabled());
        for (text, key) in [
            ("modes = []", "regulation.modes"),
            ("modes = [\"users\"]", "regulation.modes"),
            ("lock_after = 101", "regulation.lock_after"),
            ("lock_after = 0", "regulation.lock_after"),
            ("find_time = \"soon\"", "regulation.find_time"),
            ("ban_time = \"0s\"", "regulation.ban_time"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e, key, "{text}");
        }
    }
}
