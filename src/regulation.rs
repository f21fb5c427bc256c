//! Regulation (`[regulation]`): failed passwords and one-time codes are counted per client
//! address, per (account, address) and per account in sliding windows kept in the store, and
//! too many of them ban the address or the account from that address. Bans are held in memory
//! (loaded at start, written through to the store), so refusing a banned client never touches
//! the disk.
//!
//! # Security
//! - **Held in flight before judged, written once failed.** [`Regulator::attempt`] admits an
//!   attempt only when the failures already settled in each window, plus the attempts from
//!   the same address (or on the same account) still being judged, plus this one, stay within
//!   the limit, and holds it in flight (in memory) until [`Regulator::passed`] or
//!   [`Regulator::failed`]. So 50 parallel wrong guesses get exactly `max_retries` judged,
//!   never more: no check-then-count race. Only a judged failure is written to the store: a
//!   right answer writes nothing, and a crash (`kill -9`) while attempts are in flight
//!   forgets them instead of leaving failures nobody typed.
//! - **The account-wide count slows, it does not lock out.** A stranger can type wrong
//!   passwords for anyone's account, so the account-wide window never bans the account as a
//!   whole. Once it holds more than `max_retries` failures (from any addresses), each further
//!   failure bans *the address it came from*, for that account, for a delay that doubles with
//!   every failure (2 s, 4 s, 8 s, ... up to `ban_time`). The delay is a refusal with `429` and
//!   `Retry-After` until it has passed, not a sleep: no worker thread or task is held, and
//!   an attacker cannot queue thousands of waiting requests. An address that has not failed
//!   on the account is never slowed, so the owner signing in from their own address is judged
//!   on the right password and a fresh second factor while the account is attacked from
//!   elsewhere; guesses spread over many addresses each pay the growing delay after one try.
//! - **Hard lock at 100 consecutive failures** (NIST SP 800-63B 5.2.2, `lock_after`): the
//!   account is locked from everywhere until an operator lifts it (`portcullis bans revoke
//!   --user`). A completed sign-in starts the count again ([`Regulator::signed_in`]).
//! - **Same answer for every name.** Failures are counted under the identifier as typed
//!   (lower-cased) whether or not an account has it, so a ban reads the same for a real and a
//!   made-up account.

use crate::audit;
use crate::clock::Clock;
use crate::config::Regulation;
use crate::store::{Ban, Store, StoreError};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// How long the consecutive-failure count of an account lasts without a completed sign-in.
const CONSECUTIVE_WINDOW: i64 = 30 * 86_400;

/// The longest growing delay's exponent (2^20 s is far beyond any `ban_time`).
const MAX_DOUBLINGS: u32 = 20;

/// A refused attempt: come back in `retry_after` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Seconds until the ban ends (for an open-ended lock, `ban_time`).
    pub retry_after: u64,
}

/// What is banned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every sign-in attempt from an address.
    Ip(String),
    /// Attempts on an account from one address.
    Pair {
        /// The account (lower-cased identifier).
        account: String,
        /// The client address.
        ip: String,
    },
    /// Attempts on an account from everywhere.
    Account(String),
}

impl Subject {
    /// The subject's key, as bans are stored and listed: `ip:<address>`,
    /// `pair:<address> <account>` (an address has no space, so the split is unambiguous) or
    /// `user:<account>`.
    #[must_use]
    pub fn key(&self) -> String {
        match self {
            Subject::Ip(ip) => format!("ip:{ip}"),
            Subject::Pair { account, ip } => format!("pair:{ip} {account}"),
            Subject::Account(a) => format!("user:{a}"),
        }
    }

    fn parts(&self) -> (&str, &str) {
        match self {
            Subject::Ip(ip) => ("", ip),
            Subject::Pair { account, ip } => (account, ip),
            Subject::Account(a) => (a, ""),
        }
    }
}

/// The account key failures are counted under: the identifier, lower-cased.
#[must_use]
pub fn account_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// An attempt admitted to be judged, held in flight (in memory only) until it is handed to
/// [`Regulator::passed`] or [`Regulator::failed`]. Dropped unjudged (the request went away
/// before its answer), it simply leaves the flight: nothing was written for it.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    account: Option<String>,
    client: String,
    at: i64,
    /// The in-flight table it is counted in; `None` when regulation is off or once it landed.
    flight: Option<Arc<Flight>>,
}

impl Attempt {
    /// The window keys this attempt holds in flight.
    fn keys(&self) -> Vec<String> {
        let mut keys = vec![ip_window(&self.client)];
        if let Some(acct) = &self.account {
            keys.push(pair_window(acct, &self.client));
            keys.push(consecutive_counter(acct));
        }
        keys
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            Flight::leave(&mut flight.0.lock(), &self.keys());
        }
    }
}

/// Attempts admitted but not yet judged, per window key.
#[derive(Debug, Default)]
struct Flight(parking_lot::Mutex<HashMap<String, u32>>);

impl Flight {
    /// Takes one attempt holding `keys` out of `flying` (the table, locked).
    fn leave(flying: &mut HashMap<String, u32>, keys: &[String]) {
        for key in keys {
            if let Some(n) = flying.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    flying.remove(key);
                }
            }
        }
    }
}

/// The regulator: counts failures, keeps bans in memory and in the store.
pub struct Regulator {
    cfg: Regulation,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    bans: RwLock<HashMap<String, Ban>>,
    /// Attempts admitted but not yet judged, per window key, in memory only (a crash forgets
    /// them with the attempts themselves). A window over its limit only because of these is
    /// busy, not banned: a burst of right answers from one address (an office behind one NAT,
    /// sixteen sign-ins at once) never bans it.
    in_flight: Arc<Flight>,
}

impl std::fmt::Debug for Regulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regulator")
            .field("cfg", &self.cfg)
            .field("bans", &self.bans.read().len())
            .finish_non_exhaustive()
    }
}

impl Regulator {
    /// A regulator over `store`, with the bans in force loaded into memory.
    ///
    /// # Errors
    /// The store's, reading the bans.
    pub fn new(
        cfg: Regulation,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let bans = store
            .bans(clock.now())?
            .into_iter()
            .map(|b| (b.subject.clone(), b))
            .collect();
        Ok(Self {
            cfg,
            store,
            clock,
            bans: RwLock::new(bans),
            in_flight: Arc::default(),
        })
    }

    /// The settings it runs with.
    #[must_use]
    pub fn config(&self) -> &Regulation {
        &self.cfg
    }

    /// How many bans are in force now (the `portcullis_bans` gauge). Memory only.
    #[must_use]
    pub fn bans_in_force(&self) -> usize {
        let now = self.clock.now();
        self.bans
            .read()
            .values()
            .filter(|b| b.in_force(now))
            .count()
    }

    /// Sets the `portcullis_bans` gauge to [`Regulator::bans_in_force`]: after every change,
    /// at start, and once a minute (bans also end by themselves).
    pub fn publish(&self) {
        crate::metrics::set_bans(i64::try_from(self.bans_in_force()).unwrap_or(i64::MAX));
    }

    /// Whether `client` (and, when known, `account` from it) is banned at `now`. Memory only:
    /// this is what every sign-in request is checked against.
    ///
    /// # Errors
    /// [`Refused`] with the seconds until the longest ban in the way ends.
    pub fn check(&self, account: Option<&str>, client: &str, now: i64) -> Result<(), Refused> {
        let client = &address_key(client);
        let mut subjects = vec![Subject::Ip(client.to_string()).key()];
        if let Some(a) = account {
            let account = account_key(a);
            subjects.push(
                Subject::Pair {
                    account: account.clone(),
                    ip: client.to_string(),
                }
                .key(),
            );
            subjects.push(Subject::Account(account).key());
        }
        let bans = self.bans.read();
        let wait = subjects
            .iter()
            .filter_map(|s| bans.get(s))
            .filter(|b| b.in_force(now))
            .map(|b| self.wait(b, now))
            .max();
        match wait {
            Some(retry_after) => Err(Refused { retry_after }),
            None => Ok(()),
        }
    }

    fn wait(&self, ban: &Ban, now: i64) -> u64 {
        match ban.until {
            Some(u) => u64::try_from(u - now).unwrap_or(0).max(1),
            None => self.cfg.ban_time.as_secs().max(1),
        }
    }

    /// Admits an attempt on `account` (when the flow knows one) from `client` to be judged,
    /// or refuses it unjudged: `Ok(Err(_))` for a ban, for a window whose settled failures
    /// are past its limit (which bans now), or for one past it only with attempts still being
    /// judged (a short wait, no ban). An admitted attempt is held in flight in memory; only a
    /// failure, once judged, is written ([`Regulator::failed`]).
    ///
    /// # Errors
    /// The store's.
    pub fn attempt(
        &self,
        account: Option<&str>,
        client: &str,
        now: i64,
    ) -> Result<Result<Attempt, Refused>, StoreError> {
        let client = &address_key(client);
        if let Err(r) = self.check(account, client, now) {
            return Ok(Err(r));
        }
        let account = account.map(account_key);
        let mut a = Attempt {
            account: account.clone(),
            client: client.to_string(),
            at: now,
            flight: None,
        };
        if !self.cfg.enabled() {
            return Ok(Ok(a));
        }
        let max = self.cfg.max_retries;
        let find = self.find_time();
        // Reading the settled failures and what is in flight, and joining the flight, happen
        // under one lock, which [`Regulator::failed`] also holds while it moves a failure from
        // the flight to the store: of many parallel attempts each sees the others, and none
        // sees a failure twice or not at all.
        let mut flying = self.in_flight.0.lock();
        let in_flight = |k: &str| flying.get(k).copied().unwrap_or(0);
        let ip = ip_window(client);
        let ip_settled = self.store.failures(&ip, find, now)?;
        let ip_flying = in_flight(&ip);
        let (mut pair_settled, mut pair_flying) = (0, 0);
        let (mut consecutive, mut consecutive_flying) = (0, 0);
        if let Some(acct) = &account {
            let pair = pair_window(acct, client);
            pair_settled = self.store.failures(&pair, find, now)?;
            pair_flying = in_flight(&pair);
            let key = consecutive_counter(acct);
            consecutive = self.store.counter(&key, now)?;
            consecutive_flying = in_flight(&key);
        }
        // Counting this attempt as a failure: past a limit with settled failures alone bans
        // now; past it only with attempts not yet judged, this one waits its turn (a short
        // 429, no ban), so no more than `max_retries` are judged at once and none is banned
        // for answers that may yet prove right.
        let settled_over_ip = self.cfg.ip && ip_settled.saturating_add(1) > max;
        let settled_over_pair =
            self.cfg.user && account.is_some() && pair_settled.saturating_add(1) > max;
        let over_ip = self.cfg.ip && ip_settled.saturating_add(ip_flying).saturating_add(1) > max;
        let over_pair = self.cfg.user
            && account.is_some()
            && pair_settled.saturating_add(pair_flying).saturating_add(1) > max;
        let locked = account.is_some() && consecutive.saturating_add(1) > self.cfg.lock_after;
        let lock_busy = account.is_some()
            && consecutive
                .saturating_add(consecutive_flying)
                .saturating_add(1)
                > self.cfg.lock_after;
        if settled_over_ip || settled_over_pair || locked {
            drop(flying);
            if settled_over_ip {
                self.ban_for(Subject::Ip(client.to_string()), "failures", now)?;
            }
            if let (true, Some(acct)) = (settled_over_pair, &account) {
                let pair = Subject::Pair {
                    account: acct.clone(),
                    ip: client.to_string(),
                };
                self.ban_for(pair, "failures", now)?;
            }
            if let (true, Some(acct)) = (locked, &account) {
                self.lock(acct, now)?;
            }
            return Ok(Err(self
                .check(account.as_deref(), client, now)
                .err()
                .unwrap_or(Refused {
                    retry_after: self.cfg.ban_time.as_secs(),
                })));
        }
        if over_ip || over_pair || lock_busy {
            return Ok(Err(Refused {
                retry_after: BUSY_RETRY_SECS,
            }));
        }
        for key in a.keys() {
            *flying.entry(key).or_insert(0) += 1;
        }
        a.flight = Some(self.in_flight.clone());
        Ok(Ok(a))
    }

    /// The attempt was right: it leaves the flight, and nothing is written.
    ///
    /// # Errors
    /// None today; kept so a store-backed regulator may report one.
    pub fn passed(&self, a: Attempt) -> Result<(), StoreError> {
        drop(a);
        Ok(())
    }

    /// The attempt was wrong: the failure is written to its windows as it leaves the flight,
    /// and the bans it calls for are made now, so the next attempt is refused from memory.
    ///
    /// # Errors
    /// The store's.
    pub fn failed(&self, mut a: Attempt) -> Result<(), StoreError> {
        let Some(flight) = a.flight.take() else {
            return Ok(());
        };
        let (max, now) = (self.cfg.max_retries, a.at);
        let find = self.find_time();
        let keep = max.saturating_add(MAX_DOUBLINGS).max(self.cfg.lock_after);
        let (ip, pair, account_window, consecutive) = {
            // Written and taken out of the flight at once (see `attempt`).
            let mut flying = flight.0.lock();
            let written = (|| {
                let ip = self
                    .store
                    .slide_failure(&ip_window(&a.client), find, now, keep)?;
                let (mut pair, mut acct_window, mut consecutive) = (0, 0, 0);
                if let Some(acct) = &a.account {
                    pair =
                        self.store
                            .slide_failure(&pair_window(acct, &a.client), find, now, keep)?;
                    acct_window =
                        self.store
                            .slide_failure(&account_window(acct), find, now, keep)?;
                    consecutive = self.store.bump_counter(
                        &consecutive_counter(acct),
                        CONSECUTIVE_WINDOW,
                        now,
                    )?;
                }
                Ok::<_, StoreError>((ip, pair, acct_window, consecutive))
            })();
            Flight::leave(&mut flying, &a.keys());
            written?
        };
        if self.cfg.ip && ip >= max {
            self.ban_for(Subject::Ip(a.client.clone()), "failures", now)?;
        }
        let Some(acct) = a.account.take() else {
            return Ok(());
        };
        let subject = Subject::Pair {
            account: acct.clone(),
            ip: a.client.clone(),
        };
        if consecutive >= self.cfg.lock_after {
            return self.lock(&acct, now);
        }
        if self.cfg.user && pair >= max {
            return self.ban_for(subject, "failures", now);
        }
        if account_window > max {
            // The account is being guessed at from several places: this address waits a
            // delay that doubles with every failure beyond the limit.
            let doublings = (account_window - max).min(MAX_DOUBLINGS);
            let delay = (1_i64 << doublings).min(self.ban_secs());
            self.ban(subject, Some(now + delay), "slow-down", now)?;
        }
        Ok(())
    }

    /// A sign-in of `account` completed: its consecutive-failure count starts again (NIST SP
    /// 800-63B: prior failures are disregarded after a successful authentication).
    ///
    /// # Errors
    /// The store's.
    pub fn signed_in(&self, account: &str) -> Result<(), StoreError> {
        if self.cfg.enabled() {
            let key = consecutive_counter(&account_key(account));
            // Most sign-ins follow no failure: nothing to start again, nothing written.
            if self.store.counter(&key, self.clock.now())? > 0 {
                self.store.reset_counter(&key)?;
            }
        }
        Ok(())
    }

    /// Bans `subject` until `until` (`None`: until lifted), in memory and in the store, and
    /// writes the audit line. A longer ban already in force is kept.
    ///
    /// # Errors
    /// The store's.
    pub fn ban(
        &self,
        subject: Subject,
        until: Option<i64>,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let key = subject.key();
        if let Some(old) = self.bans.read().get(&key) {
            let longer = match (old.until, until) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(o), Some(n)) => o >= n,
            };
            if old.in_force(now) && longer && reason != "operator" {
                return Ok(());
            }
        }
        let ban = Ban {
            subject: key.clone(),
            since: now,
            until,
            reason: reason.to_string(),
        };
        self.store.put_ban(&ban)?;
        {
            let mut bans = self.bans.write();
            bans.retain(|_, b| b.in_force(now));
            bans.insert(key.clone(), ban);
        }
        self.publish();
        let (user, client) = subject.parts();
        tracing::warn!(subject = %key, reason, until = ?until, "sign-in attempts banned");
        audit::record(&audit::Event {
            user,
            action: "ban",
            target: &key,
            outcome: static_reason(reason),
            client,
            ended_sessions: 0,
        });
        Ok(())
    }

    /// Lifts the ban on `subject`; returns whether there was one. An account lock lifted
    /// also starts its consecutive-failure count again.
    ///
    /// # Errors
    /// The store's.
    pub fn revoke(&self, subject: &Subject) -> Result<bool, StoreError> {
        let key = subject.key();
        let existed = self.store.remove_ban(&key)?;
        let in_memory = self.bans.write().remove(&key).is_some();
        self.publish();
        if let Subject::Account(a) = subject {
            self.store.reset_counter(&consecutive_counter(a))?;
        }
        let (user, client) = subject.parts();
        tracing::info!(subject = %key, "sign-in ban lifted");
        audit::record(&audit::Event {
            user,
            action: "unban",
            target: &key,
            outcome: if existed || in_memory {
                "done"
            } else {
                "not_found"
            },
            client,
            ended_sessions: 0,
        });
        Ok(existed || in_memory)
    }

    /// Reads the bans in force from the store again and holds exactly those: bans another
    /// gateway added or lifted (heard on the change feed) take effect here. Returns how many
    /// are in force.
    ///
    /// # Errors
    /// The store's; the bans in memory stay as they were.
    pub fn reload_bans(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let stored: HashMap<String, Ban> = self
            .store
            .bans(now)?
            .into_iter()
            .map(|b| (b.subject.clone(), b))
            .collect();
        let n = stored.len();
        *self.bans.write() = stored;
        self.publish();
        Ok(n)
    }

    /// Every ban in force, ordered by subject (from the store, which holds the same as memory).
    ///
    /// # Errors
    /// The store's.
    pub fn list(&self) -> Result<Vec<Ban>, StoreError> {
        self.store.bans(self.clock.now())
    }

    fn ban_for(&self, subject: Subject, reason: &str, now: i64) -> Result<(), StoreError> {
        self.ban(subject, Some(now + self.ban_secs()), reason, now)
    }

    fn lock(&self, account: &str, now: i64) -> Result<(), StoreError> {
        tracing::warn!(user = %account, limit = self.cfg.lock_after, "account locked after consecutive failed sign-in attempts");
        self.ban(Subject::Account(account.to_string()), None, "locked", now)
    }

    fn find_time(&self) -> i64 {
        i64::try_from(self.cfg.find_time.as_secs()).unwrap_or(i64::MAX)
    }

    fn ban_secs(&self) -> i64 {
        i64::try_from(self.cfg.ban_time.as_secs()).unwrap_or(i64::MAX / 2)
    }
}

/// What a client refused only because others' attempts are still being judged waits.
const BUSY_RETRY_SECS: u64 = 1;

fn static_reason(reason: &str) -> &'static str {
    match reason {
        "failures" => "failures",
        "slow-down" => "slow-down",
        "locked" => "locked",
        _ => "operator",
    }
}

/// The address failures are counted and banned under: an IPv4 address as it is (an IPv4-mapped
/// IPv6 one as its IPv4 form), an IPv6 address as its `/64`.
///
/// # Security
/// One IPv6 subscriber holds a whole /64 (2^64 addresses): counted per address, it could make
/// every guess from a new one.
#[must_use]
pub fn address_key(client: &str) -> String {
    match client
        .trim()
        .parse::<std::net::IpAddr>()
        .map(|a| a.to_canonical())
    {
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
        Ok(v4) => v4.to_string(),
        Err(_) => client.to_string(),
    }
}

fn ip_window(client: &str) -> String {
    format!("reg:ip:{client}")
}

fn pair_window(account: &str, client: &str) -> String {
    format!("reg:pair:{client} {account}")
}

fn account_window(account: &str) -> String {
    format!("reg:user:{account}")
}

fn consecutive_counter(account: &str) -> String {
    format!("reg:consecutive:{account}")
}

#[cfg(test)]
mod tests;
