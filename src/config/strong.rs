//! The strong-factor setup stages' options: `authenticator_totp` and `authenticator_static`.

use super::error::Problem;
use super::raw::{RawStaticStage, RawTotpStage};
use super::{StaticStageConfig, TotpStageConfig};

type Checked<T> = Result<T, Problem>;

/// The HMAC a code is computed with (`algorithm`; SHA-1 is RFC 6238's default and the only one
/// every app supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TotpAlgorithm {
    /// HMAC-SHA-1.
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl TotpAlgorithm {
    /// The name in config (`sha1`) .
    pub fn as_str(self) -> &'static str {
        match self {
            TotpAlgorithm::Sha1 => "sha1",
            TotpAlgorithm::Sha256 => "sha256",
            TotpAlgorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm named `name` in config; `None` for another name.
    pub fn named(name: &str) -> Option<TotpAlgorithm> {
        [
            TotpAlgorithm::Sha1,
            TotpAlgorithm::Sha256,
            TotpAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

/// How one device's codes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TotpParams {
    /// 6 or 8.
    pub digits: u32,
    /// Seconds per step (30).
    pub period: u64,
    /// The HMAC.
    pub algorithm: TotpAlgorithm,
}

/// `authenticator_totp`: `digits` 6 (default) or 8, `period` 30, `algorithm` sha1 (default),
/// sha256 or sha512.
pub(super) fn totp_stage(name: &str, raw: &RawTotpStage) -> Checked<TotpStageConfig> {
    let base = format!("stages.{name}");
    let digits = raw.digits.unwrap_or(6);
    if digits != 6 && digits != 8 {
        return Err(Problem::new(
            format!("{base}.digits"),
            format!("`{digits}` is not 6 or 8"),
        ));
    }
    let period = raw.period.unwrap_or(30);
    if period != 30 {
        return Err(Problem::new(
            format!("{base}.period"),
            format!("`{period}` is not 30: common authenticator apps ignore any other period and would show wrong codes"),
        ));
    }
    let algorithm = match raw.algorithm.as_deref() {
        None => TotpAlgorithm::Sha1,
        Some(a) => TotpAlgorithm::named(&a.to_ascii_lowercase()).ok_or_else(|| {
            Problem::new(
                format!("{base}.algorithm"),
                format!("`{a}` is not one of \"sha1\", \"sha256\", \"sha512\""),
            )
        })?,
    };
    Ok(TotpStageConfig {
        friendly_name: raw
            .friendly_name
            .clone()
            .unwrap_or_else(|| "Authenticator app".into()),
        configure_flow: raw.configure_flow.clone(),
        params: TotpParams {
            digits,
            period,
            algorithm,
        },
    })
}

/// `authenticator_static`: `token_count` 1..=50 (default 10), `token_length` 8..=64 (default
/// 12, authentik's).
pub(super) fn static_stage(name: &str, raw: &RawStaticStage) -> Checked<StaticStageConfig> {
    let base = format!("stages.{name}");
    let token_count = raw.token_count.unwrap_or(10);
    if !(1..=50).contains(&token_count) {
        return Err(Problem::new(
            format!("{base}.token_count"),
            format!("`{token_count}` is not between 1 and 50"),
        ));
    }
    let token_length = raw.token_length.unwrap_or(12);
    // # Security
    // Codes are stored under a fast keyed hash, which is sound only for codes too long to
    // guess: 8 characters of a 32-letter alphabet are 40 bits.
    if !(8..=64).contains(&token_length) {
        return Err(Problem::new(
            format!("{base}.token_length"),
            format!("`{token_length}` is not between 8 and 64"),
        ));
    }
    Ok(StaticStageConfig {
        friendly_name: raw
            .friendly_name
            .clone()
            .unwrap_or_else(|| "Recovery codes".into()),
        configure_flow: raw.configure_flow.clone(),
        token_count,
        token_length,
    })
}
