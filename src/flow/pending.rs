//! What keeps unfinished sign-ins from filling the disk: a page load stores nothing (a fresh
//! execution travels in the flow cookie, signed, until an answer changes it), and the
//! executions stored for one client address are capped.
//!
//! # Security
//! - A held execution is only ever one a fresh start makes (no user named, nothing proved,
//!   nothing sent), so the cookie carries nothing but its id, flow, return address, start
//!   time and invitation token, under an HMAC keyed by a secret of the store: a client can
//!   neither forge one nor change where it returns to. Its CSRF token is derived from its id
//!   under that key, so the form's token checks out without a stored record.
//! - Replaying a held cookie only starts the same fresh sign-in again; once its execution is
//!   stored, the cookie resumes the stored one.
//! - The cap counts executions per address (IPv6 per /64, what one host or site is given),
//!   so one address filling its share never blocks another.

use super::Execution;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::IpAddr;

/// The prefix of a flow cookie that holds an execution instead of naming a stored one.
pub(crate) const HELD: &str = "h.";

pub use crate::redirect::MAX_RD_BYTES;

/// The most bytes a held flow cookie may have (its `rd` at [`MAX_RD_BYTES`] fits).
pub(crate) const MAX_HELD_COOKIE: usize = 3600;

/// What a held flow cookie carries.
#[derive(Serialize, Deserialize)]
struct Held {
    /// The execution's id (the key it is stored under once an answer changes it).
    i: String,
    /// The flow's slug.
    f: String,
    /// Where it returns to (validated when it was started).
    r: String,
    /// Unix seconds it started.
    c: i64,
    /// The invitation token the link carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
}

fn mac(key: &[u8; 32], label: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(label);
    m.update(&[0]);
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The CSRF token of the execution `id`.
pub(crate) fn csrf(key: &[u8; 32], id: &str) -> String {
    let tag = mac(key, b"flow-csrf", id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag[..24])
}

/// The flow cookie's value that holds `exec`.
pub(crate) fn token(key: &[u8; 32], exec: &Execution) -> String {
    let held = Held {
        i: exec.id.clone(),
        f: exec.flow.clone(),
        r: exec.rd.clone(),
        c: exec.created,
        t: exec
            .invitation_token
            .as_ref()
            .map(|t| t.expose().to_string()),
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = b64.encode(serde_json::to_vec(&held).unwrap_or_default());
    let tag = b64.encode(mac(key, b"flow-held", body.as_bytes()));
    format!("{HELD}{body}.{tag}")
}

/// What a held cookie says, once its tag checks out: (id, flow, rd, created, invitation).
pub(crate) fn read(
    key: &[u8; 32],
    value: &str,
) -> Option<(String, String, String, i64, Option<String>)> {
    if value.len() > MAX_HELD_COOKIE {
        return None;
    }
    let (body, tag) = value.strip_prefix(HELD)?.split_once('.')?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let tag = b64.decode(tag).ok()?;
    let expected = mac(key, b"flow-held", body.as_bytes());
    if !crate::secret::equal(&tag, &expected) {
        return None;
    }
    let held: Held = serde_json::from_slice(&b64.decode(body).ok()?).ok()?;
    if held.i.is_empty() || held.i.len() > 64 || held.r.len() > MAX_RD_BYTES {
        return None;
    }
    Some((held.i, held.f, held.r, held.c, held.t))
}

/// The address the cap counts a client under: IPv4 as is, IPv6 by its /64.
pub(crate) fn client_key(client: &str) -> String {
    match client.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => client.to_string(),
    }
}

/// The stored executions of each client address, with their expiry.
#[derive(Default)]
pub(crate) struct Live {
    by_client: HashMap<String, HashMap<String, i64>>,
    client_of: HashMap<String, String>,
    reservations: u64,
}

impl Live {
    /// Counts the execution `id` of `client`, unless the address already has `max` live ones:
    /// then `Err` with the seconds until its oldest expires.
    pub(crate) fn reserve(
        &mut self,
        client: &str,
        id: &str,
        expires: i64,
        now: i64,
        max: usize,
    ) -> Result<(), i64> {
        self.reservations += 1;
        if self.reservations.is_multiple_of(1024) {
            self.prune(now);
        }
        let key = client_key(client);
        let ids = self.by_client.entry(key.clone()).or_default();
        ids.retain(|_, exp| *exp > now);
        if !ids.contains_key(id) && ids.len() >= max {
            let first = ids.values().min().copied().unwrap_or(now + 1);
            return Err((first - now).max(1));
        }
        ids.insert(id.to_string(), expires);
        self.client_of.insert(id.to_string(), key);
        Ok(())
    }

    /// Whether `client` is at the cap now: the seconds until a slot frees, if so.
    pub(crate) fn full(&mut self, client: &str, now: i64, max: usize) -> Option<i64> {
        let ids = self.by_client.get_mut(&client_key(client))?;
        ids.retain(|_, exp| *exp > now);
        (ids.len() >= max).then(|| (ids.values().min().copied().unwrap_or(now + 1) - now).max(1))
    }

    /// The execution `id` is gone (finished, ended, started over).
    pub(crate) fn release(&mut self, id: &str) {
        let Some(key) = self.client_of.remove(id) else {
            return;
        };
        if let Some(ids) = self.by_client.get_mut(&key) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_client.remove(&key);
            }
        }
    }

    /// Drops every expired entry.
    fn prune(&mut self, now: i64) {
        let client_of = &mut self.client_of;
        self.by_client.retain(|_, ids| {
            ids.retain(|id, exp| {
                let live = *exp > now;
                if !live {
                    client_of.remove(id);
                }
                live
            });
            !ids.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_per_host_and_ipv6_per_64() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
            ("not an address", "not an address"),
        ];
        for (client, key) in cases {
            assert_eq!(client_key(client), key, "{client}");
        }
    }

    #[test]
    fn the_cap_holds_per_address_and_frees_slots_as_executions_go() {
        let mut live = Live::default();
        for i in 0..3 {
            assert!(live
                .reserve("192.0.2.7", &format!("e{i}"), 100, 0, 3)
                .is_ok());
        }
        assert_eq!(live.reserve("192.0.2.7", "e3", 100, 0, 3), Err(100));
        assert_eq!(live.full("192.0.2.7", 0, 3), Some(100));
        // Another address is not held up; saving a counted execution again is not a new one.
        assert!(live.reserve("192.0.2.8", "x", 100, 0, 3).is_ok());
        assert!(live.reserve("192.0.2.7", "e1", 100, 0, 3).is_ok());
        live.release("e1");
        assert!(live.reserve("192.0.2.7", "e3", 100, 0, 3).is_ok());
        // Expired ones free their slots.
        assert!(live.reserve("192.0.2.7", "e4", 200, 100, 3).is_ok());
        assert_eq!(live.full("192.0.2.7", 100, 3), None);
    }

    #[test]
    fn a_held_cookie_is_read_back_only_as_signed() {
        let key = [7u8; 32];
        let mut exec = Execution::decode("id", "f", b"{}");
        exec.id = "abc".into();
        exec.flow = "login".into();
        exec.rd = "https://app.example.test/a?b=c".into();
        exec.created = 42;
        let t = token(&key, &exec);
        let (id, flow, rd, created, inv) = read(&key, &t).expect("reads");
        assert_eq!(
            (id.as_str(), flow.as_str(), rd.as_str(), created, inv),
            ("abc", "login", "https://app.example.test/a?b=c", 42, None)
        );
        assert!(read(&[8u8; 32], &t).is_none(), "another key");
        let (body, tag) = t
            .split_once('.')
            .map(|(_, r)| r)
            .and_then(|r| r.split_once('.'))
            .expect("parts");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut raw = b64.decode(body).expect("b64");
        let at = raw.len() - 5;
        raw[at] ^= 1;
        let forged = [
            format!("{HELD}{}.{tag}", b64.encode(&raw)),
            format!("{HELD}{body}.{}", &tag[1..]),
            format!("{HELD}{body}"),
            format!("x.{body}.{tag}"),
            t.replace(HELD, ""),
            String::new(),
        ];
        for f in forged {
            assert!(read(&key, &f).is_none(), "{f}");
        }
    }
}
