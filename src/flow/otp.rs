//! One-time codes and links: generation from the OS CSPRNG, keyed hashing, constant-time
//! checks, expiry, and send/attempt limits that hold per execution and per user, so starting
//! a new sign-in does not reset them.

use super::{FlowError, StageContext};
use crate::config::{OtpMode, OtpPolicy};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Message shown when the attempt limit is reached; the execution ends.
pub const TOO_MANY_ATTEMPTS: &str = "Too many attempts. Start the sign-in again.";
pub const TOO_MANY_SENDS: &str =
    "No more codes can be sent for this sign-in right now. Try again later.";
pub const WRONG_CODE: &str = "That code is not valid. Check it and try again.";
pub const EXPIRED_CODE: &str = "That code has expired. Send a new one.";
pub const RESENT: &str = "A new code was sent. Codes sent earlier no longer work.";
pub const RESENT_LINK: &str = "A new link was sent. Links sent earlier no longer work.";

/// A code of `len` decimal digits, each drawn uniformly from the OS CSPRNG.
pub fn generate_code(len: u32) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// HMAC-SHA256 of a code under the gateway's OTP key, bound to its purpose. Codes are short, so
/// a plain hash could be reversed by trying them all; without the key nobody can.
pub fn hash_code(key: &[u8; 32], purpose: &str, code: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(code.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// SHA-256 of a high-entropy token (a link secret): enough, since it cannot be guessed.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `code` matches `stored` (a [`hash_code`] result), in constant time.
pub fn verify_code(key: &[u8; 32], purpose: &str, code: &str, stored: &str) -> bool {
    let candidate = hash_code(key, purpose, code.trim());
    crate::secret::equal(candidate.as_bytes(), stored.as_bytes())
}

/// The outstanding challenge of one stage, kept in the execution.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct OtpState {
    /// Hash of the current code; `None` before the first send or after a failed one.
    pub code_hash: Option<String>,
    pub expires: i64,
    /// Sends in this execution.
    pub sends: u32,
    /// Wrong codes in this execution.
    pub attempts: u32,
    /// Ticket hash of the current magic link.
    pub link: Option<String>,
    /// Nothing is really sent (unknown or inactive account); every code is wrong. Kept so the
    /// answers look exactly like a real send.
    #[serde(default)]
    pub decoy: bool,
}

impl OtpState {
    /// Makes what the last send issued unusable: its code, and its magic link with the
    /// server-side ticket. Used when the message did not go out, so a page that says "send
    /// again" never sits beside a link that would still work.
    ///
    /// # Errors
    /// Storage errors.
    pub fn withdraw(&mut self, cx: &StageContext<'_>) -> Result<(), FlowError> {
        self.code_hash = None;
        if let Some(link) = self.link.take() {
            cx.services.store.take_ticket(&link)?;
        }
        Ok(())
    }
}

/// A magic link's server-side record, stored under the hash of its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkTicket {
    pub execution: String,
    pub flow: String,
    pub stage: String,
    /// Set when someone opened the link and confirmed; the stage then consumes it.
    pub confirmed: bool,
    /// Whether the tab that confirms may carry on with the sign-in (same browser only).
    pub continue_in_verify_window: bool,
}

/// What a send produced: the secret to deliver.
pub enum Issued {
    Code(String),
    /// The full URL of the link.
    Link(String),
}

/// Why a send was refused before anything went out.
#[derive(Debug, PartialEq, Eq)]
pub enum SendRefused {
    Limit,
}

/// The verdict on a typed code.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeVerdict {
    Valid,
    Wrong,
    Expired,
    /// The attempt limit is reached (this attempt included): the execution must end.
    TooMany,
}

/// Applies one stage's [`OtpPolicy`] to its [`OtpState`].
pub struct Otp<'p> {
    pub policy: &'p OtpPolicy,
    /// Distinguishes counters and hashes of different channels (`email`, `sms`).
    pub channel: &'static str,
}

impl Otp<'_> {
    /// Who limits are counted against: the account, or what was typed when none matched (so a
    /// made-up name is limited exactly like a real one).
    pub fn subject(cx: &StageContext<'_>) -> String {
        match (&cx.exec.user, &cx.exec.uid) {
            (Some(u), _) => format!("user:{u}"),
            (None, Some(uid)) => format!("uid:{}", uid.to_lowercase()),
            (None, None) => format!("exec:{}", cx.exec.id),
        }
    }

    fn counter_key(&self, what: &str, subject: &str) -> String {
        format!("otp:{}:{what}:{subject}", self.channel)
    }

    fn window(&self) -> i64 {
        self.policy.user_limit_window.as_secs() as i64
    }

    /// Whether another send is allowed, per execution and per user.
    ///
    /// # Errors
    /// Storage errors.
    pub fn can_send(&self, cx: &StageContext<'_>, st: &OtpState) -> Result<bool, FlowError> {
        let max = self.policy.max_challenges_sent;
        if max == 0 {
            return Ok(true);
        }
        if st.sends >= max {
            return Ok(false);
        }
        let key = self.counter_key("sends", &Self::subject(cx));
        Ok(cx.services.store.counter(&key, crate::clock::now())? < max)
    }

    /// Counts a send and creates a fresh secret, replacing any earlier one. The caller
    /// delivers it; a failed delivery still counts (it may have reached the provider).
    ///
    /// # Errors
    /// [`SendRefused::Limit`] wrapped in `Ok(Err(..))` when a limit is reached; storage errors.
    pub fn issue(
        &self,
        cx: &mut StageContext<'_>,
        st: &mut OtpState,
    ) -> Result<Result<Issued, SendRefused>, FlowError> {
        if !self.can_send(cx, st)? {
            return Ok(Err(SendRefused::Limit));
        }
        let now = crate::clock::now();
        st.sends += 1;
        let key = self.counter_key("sends", &Self::subject(cx));
        cx.services.store.bump_counter(&key, self.window(), now)?;
        if let Some(old) = st.link.take() {
            cx.services.store.take_ticket(&old)?;
        }
        match self.policy.mode {
            OtpMode::Code => {
                let code = generate_code(self.policy.code_length);
                let otp_key = cx.services.store.secret("otp")?;
                st.code_hash = Some(hash_code(&otp_key, &self.purpose(cx), &code));
                st.expires = now + self.policy.token_expiry.as_secs() as i64;
                Ok(Ok(Issued::Code(code)))
            }
            OtpMode::Link => {
                let token = crate::secret::random_token(32);
                let hash = hash_token(&token);
                let ticket = LinkTicket {
                    execution: cx.exec.id.clone(),
                    flow: cx.exec.flow.clone(),
                    stage: cx.name.to_string(),
                    confirmed: false,
                    continue_in_verify_window: self.policy.continue_in_verify_window,
                };
                let expires = now + self.policy.link_ttl.as_secs() as i64;
                let bytes = serde_json::to_vec(&ticket)?;
                if !st.decoy {
                    cx.services.store.put_ticket(&hash, expires, &bytes)?;
                }
                st.link = Some(hash);
                st.code_hash = None;
                st.expires = expires;
                Ok(Ok(Issued::Link(format!(
                    "{}/.portcullis/link?token={token}",
                    cx.origin
                ))))
            }
        }
    }

    /// Binds a code to this execution and stage: a code for one sign-in is useless in another.
    fn purpose(&self, cx: &StageContext<'_>) -> String {
        format!("{}:{}:{}", self.channel, cx.exec.id, cx.name)
    }

    /// Judges a typed code; a valid one is used up.
    ///
    /// # Errors
    /// Storage errors.
    pub fn check(
        &self,
        cx: &mut StageContext<'_>,
        st: &mut OtpState,
        code: &str,
    ) -> Result<CodeVerdict, FlowError> {
        let now = crate::clock::now();
        let subject = Self::subject(cx);
        let fails_key = self.counter_key("fails", &subject);
        let max = self.policy.max_allowed_attempts;
        // The attempt is counted before the code is looked at, atomically, so parallel
        // guesses from several sign-ins cannot all pass a check made before any of them was
        // counted. A right code resets the count.
        let user_fails = if max > 0 {
            let n = cx
                .services
                .store
                .bump_counter(&fails_key, self.window(), now)?;
            if n > max {
                st.code_hash = None;
                return Ok(CodeVerdict::TooMany);
            }
            n
        } else {
            0
        };
        let valid = match &st.code_hash {
            Some(h) if !st.decoy => {
                let otp_key = cx.services.store.secret("otp")?;
                verify_code(&otp_key, &self.purpose(cx), code, h)
            }
            _ => false,
        };
        if valid && now < st.expires {
            st.code_hash = None;
            cx.services.store.reset_counter(&fails_key)?;
            return Ok(CodeVerdict::Valid);
        }
        if valid {
            st.code_hash = None;
            return Ok(CodeVerdict::Expired);
        }
        st.attempts += 1;
        if max > 0 && (st.attempts >= max || user_fails >= max) {
            st.code_hash = None;
            return Ok(CodeVerdict::TooMany);
        }
        Ok(CodeVerdict::Wrong)
    }

    /// Whether the current link was confirmed; if so it is consumed (single use).
    ///
    /// # Errors
    /// Storage or corrupt-record errors.
    pub fn link_confirmed(
        &self,
        cx: &mut StageContext<'_>,
        st: &mut OtpState,
    ) -> Result<bool, FlowError> {
        let Some(hash) = st.link.clone() else {
            return Ok(false);
        };
        let Some(bytes) = cx.services.store.ticket(&hash, crate::clock::now())? else {
            return Ok(false);
        };
        let ticket: LinkTicket = serde_json::from_slice(&bytes)?;
        if !ticket.confirmed || ticket.execution != cx.exec.id {
            return Ok(false);
        }
        if !cx.services.store.take_ticket(&hash)? {
            return Ok(false);
        }
        st.link = None;
        Ok(true)
    }
}

/// Shows an address so its owner recognises it without revealing it to a bystander:
/// `al***@example.com`, `+41*****89`.
pub fn mask(address: &str) -> String {
    if let Some((local, domain)) = address.split_once('@') {
        let keep: String = local.chars().take(2).collect();
        return format!("{keep}***@{domain}");
    }
    let chars: Vec<char> = address.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_length_and_only_digits() {
        let c = generate_code(8);
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn code_hash_verifies_only_same_code_and_purpose() {
        let key = [7u8; 32];
        let h = hash_code(&key, "email:x:s", "123456");
        assert!(verify_code(&key, "email:x:s", "123456", &h));
        assert!(verify_code(&key, "email:x:s", " 123456 ", &h));
        assert!(!verify_code(&key, "email:x:s", "123457", &h));
        assert!(!verify_code(&key, "email:y:s", "123456", &h));
        assert!(!verify_code(&[8u8; 32], "email:x:s", "123456", &h));
    }

    #[test]
    fn masks_addresses() {
        assert_eq!(mask("alice@example.com"), "al***@example.com");
        assert_eq!(mask("+41791234589"), "+41*******89");
    }
}
