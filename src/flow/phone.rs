//! Phone numbers: normalised to E.164 before anything is checked, sent or stored.

use crate::config::SmsStageConfig;

/// Strips the separators people type (spaces, `-`, `.`, `(`, `)`, `/`) and checks the result is
/// E.164: `+` and 8 to 15 digits.
pub(crate) fn normalise(raw: &str) -> Option<String> {
    let n: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '.' | '(' | ')' | '/'))
        .collect();
    let digits = n.strip_prefix('+')?;
    let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(n)
}

/// The normalised number if this stage accepts it: E.164, one of `allowed_prefixes` (when
/// set), and matching `phone_pattern` in full (when set; the config anchors it at load, as
/// HTML's `pattern` is anchored, so `\+4179` does not accept every number that starts so).
pub(crate) fn accept(raw: &str, cfg: &SmsStageConfig) -> Option<String> {
    let n = normalise(raw)?;
    if !cfg.allowed_prefixes.is_empty() && !cfg.allowed_prefixes.iter().any(|p| n.starts_with(p)) {
        return None;
    }
    if cfg
        .phone_pattern
        .as_ref()
        .is_some_and(|re| !re.is_match(&n))
    {
        return None;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_removed_and_e164_enforced() {
        assert_eq!(
            normalise(" +41 (79) 123-45.67 ").as_deref(),
            Some("+41791234567")
        );
        assert_eq!(normalise("0791234567"), None);
        assert_eq!(normalise("+4179"), None);
        assert_eq!(normalise("+1234567890123456"), None);
        assert_eq!(normalise("+41 79 abc"), None);
    }
}
