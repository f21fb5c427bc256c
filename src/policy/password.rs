//! `password` policies: authentik's static rules (length and character classes), a zxcvbn
//! strength score, and an offline breached-password check against Have I Been Pwned's range
//! files (one file per 5-hex-digit SHA-1 prefix, lines `SUFFIX:COUNT`).

use sha1::{Digest, Sha1};
use std::io::Read;
use std::path::{Path, PathBuf};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What a `password` policy asks of a prompt answer (authentik's names). Counts are of
/// Unicode characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordRules {
    /// The `flow.prompt_data` key holding the password.
    pub field: String,
    /// Whether the static rules below are checked (authentik's `check_static_rules`).
    pub check_static_rules: bool,
    /// At least this many characters.
    pub length_min: usize,
    /// At least this many upper-case letters.
    pub amount_uppercase: usize,
    /// At least this many lower-case letters.
    pub amount_lowercase: usize,
    /// At least this many digits.
    pub amount_digits: usize,
    /// At least this many symbols (neither letter, digit nor space).
    pub amount_symbols: usize,
    /// `Some(threshold)` when zxcvbn is checked (`check_zxcvbn`): a score (0 to 4) at or below
    /// `zxcvbn_score_threshold` fails.
    pub zxcvbn_score_threshold: Option<u8>,
    /// The breached-password list, when checked (`check_have_i_been_pwned`).
    pub breached: Option<BreachedList>,
}

/// Why a password failed, to show the user, or why it could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordVerdict {
    /// Every check passed.
    Pass,
    /// A check failed; the reasons say which, for the user (empty: only the policy's message).
    Fail(Vec<String>),
    /// The breached-password list could not be read: the policy denies (fails closed).
    Unchecked(String),
}

/// Said when zxcvbn scores a password at or below the threshold (authentik's words).
pub const TOO_WEAK: &str = "Password is too weak.";

/// Said when the breached-password list cannot be read at check time.
pub const UNCHECKED: &str =
    "The password could not be checked against the list of breached passwords. Try again later.";

impl PasswordRules {
    /// Whether `password` meets every static rule.
    pub fn allows(&self, password: &str) -> bool {
        let count = |f: fn(&char) -> bool| password.chars().filter(f).count();
        password.chars().count() >= self.length_min
            && count(|c| c.is_uppercase()) >= self.amount_uppercase
            && count(|c| c.is_lowercase()) >= self.amount_lowercase
            && count(|c| c.is_numeric()) >= self.amount_digits
            && count(|c| !c.is_alphanumeric() && !c.is_whitespace()) >= self.amount_symbols
    }

    /// Whether any check is switched on (a policy that checks nothing is refused at load).
    pub fn checks_anything(&self) -> bool {
        let statics = self.length_min
            + self.amount_uppercase
            + self.amount_lowercase
            + self.amount_digits
            + self.amount_symbols;
        (self.check_static_rules && statics > 0)
            || self.zxcvbn_score_threshold.is_some()
            || self.breached.is_some()
    }

    /// Runs every check on `password`. `user_inputs` (the user's username, name, email) make
    /// zxcvbn score passwords built from them as weak. `has_message`: the policy has its own
    /// message, so generic reasons are left out (specific ones, such as zxcvbn's advice and
    /// the breach count, are kept). Blocking: it may read one file.
    ///
    /// # Security
    /// Neither the password nor its hash is logged or returned.
    pub fn check(
        &self,
        password: &str,
        user_inputs: &[&str],
        has_message: bool,
    ) -> PasswordVerdict {
        let mut reasons = Vec::new();
        let mut failed = false;
        if self.check_static_rules && !self.allows(password) {
            failed = true;
            if !has_message {
                reasons.push(self.describe());
            }
        }
        if let Some(threshold) = self.zxcvbn_score_threshold {
            let entropy = zxcvbn::zxcvbn(password, user_inputs);
            if u8::from(entropy.score()) <= threshold {
                failed = true;
                if !has_message {
                    reasons.push(TOO_WEAK.to_string());
                }
                if let Some(f) = entropy.feedback() {
                    reasons.extend(f.warning().map(|w| w.to_string()));
                    reasons.extend(f.suggestions().iter().map(ToString::to_string));
                }
            }
        }
        if let Some(list) = &self.breached {
            match list.count(password) {
                Ok(n) if n > list.allowed_count => {
                    failed = true;
                    reasons.push(format!(
                        "This password has appeared {n} times in data breaches; choose another."
                    ));
                }
                Ok(_) => {}
                Err(why) => return PasswordVerdict::Unchecked(why),
            }
        }
        if failed {
            PasswordVerdict::Fail(reasons)
        } else {
            PasswordVerdict::Pass
        }
    }

    /// The static rules in words, for a policy without a message.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.length_min > 0 {
            parts.push(format!("at least {} characters", self.length_min));
        }
        for (n, what) in [
            (self.amount_uppercase, "upper-case letter"),
            (self.amount_lowercase, "lower-case letter"),
            (self.amount_digits, "digit"),
            (self.amount_symbols, "symbol"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}{}", if n == 1 { "" } else { "s" }));
            }
        }
        format!("Passwords need {}.", parts.join(", "))
    }
}

/// An offline copy of Have I Been Pwned's Pwned Passwords, as its downloader writes it with
/// one file per prefix: `DIR/ABCDE.txt` for SHA-1 hashes starting `ABCDE`, each line the
/// remaining 35 hex digits, `:` and how often the password was seen (CRLF or LF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachedList {
    /// The folder of range files.
    pub dir: PathBuf,
    /// A password seen this many times or fewer still passes (`hibp_allowed_count`).
    pub allowed_count: u64,
}

/// A range file larger than this is not one (the largest real ones are under 100 KiB).
const MAX_RANGE_FILE: u64 = 4 << 20;

impl BreachedList {
    /// Whether `dir` is a folder that can be listed (checked when the config loads).
    ///
    /// # Errors
    /// Why not, for the operator.
    pub fn usable(dir: &Path) -> Result<(), String> {
        match std::fs::read_dir(dir) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!(
                "`{}` is not a readable folder of HIBP range files: {e}",
                dir.display()
            )),
        }
    }

    /// How often the password appears in the list (0 when not at all). Reads only the range
    /// file of the hash's prefix, and reads and compares every line of it whether or not the
    /// hash is there, so the work depends on the prefix alone.
    ///
    /// # Errors
    /// The folder or the range file cannot be read, or the file is not a range file: a
    /// message for the user and the log, naming neither the password nor its hash. A missing
    /// range file in a readable folder means "not breached" (the list has no such prefix).
    ///
    /// # Security
    /// k-anonymity is moot offline, but the file read is still the prefix's alone; nothing
    /// about the hash is logged.
    pub fn count(&self, password: &str) -> Result<u64, String> {
        let hex = upper_hex(&Sha1::digest(password.as_bytes()));
        let (prefix, suffix) = hex.split_at(5);
        let path = self.dir.join(format!("{prefix}.txt"));
        let text = match read_bounded(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The prefix's file is missing: fine in a readable folder, not if the folder
                // itself went away.
                if let Err(why) = Self::usable(&self.dir) {
                    return Err(self.unreadable(&why));
                }
                return Ok(0);
            }
            Err(e) => return Err(self.unreadable(&e.to_string())),
        };
        let suffix = suffix.as_bytes();
        let mut found = 0u64;
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let (hash, count) = match line.iter().position(|&b| b == b':') {
                Some(at) => (&line[..at], &line[at + 1..]),
                None => (line, &b""[..]),
            };
            let count = std::str::from_utf8(count)
                .ok()
                .and_then(|c| c.trim().parse::<u64>().ok());
            let Some(count) = count else {
                return Err(self.unreadable("a line is not `SUFFIX:COUNT`"));
            };
            let upper: Vec<u8> = hash.iter().map(u8::to_ascii_uppercase).collect();
            let same = upper.as_slice().ct_eq(suffix);
            found.conditional_assign(&count, same);
        }
        Ok(found)
    }

    fn unreadable(&self, why: &str) -> String {
        tracing::warn!(dir = %self.dir.display(), error = %why, "the breached-password list cannot be read; the password policy denies");
        UNCHECKED.to_string()
    }
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    file.take(MAX_RANGE_FILE + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_RANGE_FILE {
        return Err(std::io::Error::other("a range file larger than 4 MiB"));
    }
    Ok(out)
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `password`'s SHA-1 as Have I Been Pwned writes it (upper-case hex), for tests that build a
/// range folder.
pub fn sha1_upper_hex(password: &str) -> String {
    upper_hex(&Sha1::digest(password.as_bytes()))
}
