//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): the secret, the codes, the
//! `otpauth://` URL authenticator apps scan, and the QR code that carries it, rendered here as
//! SVG (no image service, no script).

use crate::secret::SecretString;
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use crate::config::{TotpAlgorithm as Algorithm, TotpParams as Params};

/// The algorithm's name in an `otpauth://` URL (`SHA1`).
fn uri_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Sha1 => "SHA1",
        Algorithm::Sha256 => "SHA256",
        Algorithm::Sha512 => "SHA512",
    }
}

/// Bytes of a fresh secret: the hash's output length, as RFC 6238's reference does.
fn secret_len(a: Algorithm) -> usize {
    match a {
        Algorithm::Sha1 => 20,
        Algorithm::Sha256 => 32,
        Algorithm::Sha512 => 64,
    }
}

/// A fresh secret from the OS CSPRNG, as long as the hash's output.
pub fn new_secret(algorithm: Algorithm) -> Vec<u8> {
    let mut s = vec![0u8; secret_len(algorithm)];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

/// The secret as apps take it typed: base32 without padding.
pub fn base32(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The time step `now` (unix seconds) falls in.
pub fn step(now: i64, period: u64) -> u64 {
    u64::try_from(now).unwrap_or(0) / period.max(1)
}

/// The code for `step` (RFC 4226 dynamic truncation).
pub fn code(secret: &[u8], step: u64, p: &Params) -> String {
    let msg = step.to_be_bytes();
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    macro_rules! mac {
        ($d:ty) => {
            match Hmac::<$d>::new_from_slice(secret) {
                Ok(mut m) => {
                    m.update(&msg);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        };
    }
    let mac: Vec<u8> = match p.algorithm {
        Algorithm::Sha1 => mac!(sha1::Sha1),
        Algorithm::Sha256 => mac!(sha2::Sha256),
        Algorithm::Sha512 => mac!(sha2::Sha512),
    };
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let bin = mac
        .get(offset..offset + 4)
        .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
        .unwrap_or(0);
    let modulo = 10u32.pow(p.digits.min(9));
    format!("{:0width$}", bin % modulo, width = p.digits as usize)
}

/// The step within ±1 of `now`'s whose code `typed` is (compared in constant time), if any.
///
/// # Security
/// One step of skew either way (RFC 6238 section 5.2's recommendation) tolerates a clock off
/// by up to a period; two steps are refused. The caller refuses a step at or before the last
/// one used, so each code works once.
pub fn matching_step(secret: &[u8], typed: &SecretString, now: i64, p: &Params) -> Option<u64> {
    let typed = typed.expose().trim();
    if typed.len() != p.digits as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let here = step(now, p.period);
    let mut found = None;
    // Every candidate is computed and compared, so timing does not say which one matched.
    for s in [here.saturating_sub(1), here, here + 1] {
        let ok = crate::secret::equal(code(secret, s, p).as_bytes(), typed.as_bytes());
        if ok && found.is_none() {
            found = Some(s);
        }
    }
    found
}

/// The `otpauth://totp/ISSUER:ACCOUNT?...` URL authenticator apps read from the QR code.
pub fn otpauth_url(secret: &[u8], issuer: &str, account: &str, p: &Params) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer),
        uri_name(p.algorithm),
        p.digits,
        p.period
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(digits: u32, algorithm: Algorithm) -> Params {
        Params {
            digits,
            period: 30,
            algorithm,
        }
    }

    /// RFC 6238 appendix B: the seeds and the 8-digit codes at each test time.
    #[test]
    fn codes_match_rfc_6238s_test_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let vectors: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, c1, c256, c512) in vectors {
            let s = step(t, 30);
            assert_eq!(code(&sha1, s, &params(8, Algorithm::Sha1)), c1, "{t}");
            assert_eq!(code(&sha256, s, &params(8, Algorithm::Sha256)), c256, "{t}");
            assert_eq!(code(&sha512, s, &params(8, Algorithm::Sha512)), c512, "{t}");
        }
        assert_eq!(
            code(&sha1, step(59, 30), &params(6, Algorithm::Sha1)),
            "287082"
        );
    }

    #[test]
    fn one_step_of_skew_is_accepted_and_two_are_not() {
        let secret = new_secret(Algorithm::Sha1);
        let p = params(6, Algorithm::Sha1);
        let now = 1_700_000_000;
        let here = step(now, 30);
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let s = here.checked_add_signed(offset).unwrap();
            let typed = SecretString::new(code(&secret, s, &p));
            assert_eq!(
                matching_step(&secret, &typed, now, &p),
                ok.then_some(s),
                "{offset}"
            );
        }
        for junk in ["", "12345", "1234567", "12345a", "１２３４５６"] {
            assert_eq!(
                matching_step(&secret, &SecretString::new(junk), now, &p),
                None
            );
        }
    }

    #[test]
    fn the_url_names_issuer_account_and_parameters() {
        let p = params(8, Algorithm::Sha256);
        let url = otpauth_url(b"12345678901234567890", "Acme & Co", "alice@x", &p);
        assert_eq!(
            url,
            "otpauth://totp/Acme%20%26%20Co:alice%40x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20%26%20Co&algorithm=SHA256&digits=8&period=30"
        );
    }
}

/// What a TOTP device keeps in [`crate::store::Device::secret`] (as JSON): the secret sealed
/// under the device key, how its codes are made, and the last time step used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    /// The secret, sealed ([`crate::device_key::DeviceKey::seal`]) for this user and device.
    pub sealed: String,
    /// How codes are made.
    pub params: Params,
    /// The last step whose code was accepted; a code of this step or an earlier one is a
    /// replay.
    pub last_step: u64,
}

impl Material {
    /// The material of a stored device; `None` when it holds none or it does not decode.
    pub fn of(device: &crate::store::Device) -> Option<Material> {
        serde_json::from_str(device.secret.as_deref()?).ok()
    }

    /// As stored in [`crate::store::Device::secret`].
    pub fn to_stored(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }
}

/// What a device's secret is sealed for: its user and id, so it opens for no other record.
pub fn seal_context(username: &str, device_id: &str) -> String {
    format!("totp\0{username}\0{device_id}")
}
