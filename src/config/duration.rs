//! Durations as operators write them (`"30m"`, `"12h"`, `"90s"`).

use std::time::Duration;

/// Parses a human duration; zero is refused because every duration here is a lifetime or timeout.
pub fn parse(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like \"30m\" or \"12h\" ({e})"))?;
    if d.is_zero() {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_minutes_and_hours() {
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("12h").unwrap(), Duration::from_secs(43200));
    }

    #[test]
    fn refuses_garbage_and_zero() {
        assert!(parse("soon").is_err());
        assert!(parse("0s").is_err());
    }
}
