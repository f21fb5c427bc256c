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

/// Parses authentik's timedelta format (`"hours=1;minutes=30"`, units `weeks`, `days`,
/// `hours`, `minutes`, `seconds`, each at most once, `;`-separated), or failing that a human
/// duration (`"90m"`). Zero is allowed: it means "never".
pub(super) fn parse_timedelta(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.contains('=') {
        return match humantime::parse_duration(text) {
            Ok(d) => Ok(d),
            Err(e) => Err(format!(
                "`{text}` is neither authentik's \"hours=1;minutes=30\" nor a duration like \"90m\" ({e})"
            )),
        };
    }
    let mut total: u64 = 0;
    let mut seen: Vec<&str> = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((unit, n)) = part.split_once('=') else {
            return Err(format!("`{part}` is not UNIT=NUMBER"));
        };
        let unit = unit.trim();
        let secs: u64 = match unit {
            "weeks" => 604_800,
            "days" => 86_400,
            "hours" => 3_600,
            "minutes" => 60,
            "seconds" => 1,
            other => {
                return Err(format!(
                    "`{other}` is not one of weeks, days, hours, minutes, seconds"
                ))
            }
        };
        if seen.contains(&unit) {
            return Err(format!("`{unit}` is given twice"));
        }
        seen.push(unit);
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a whole number of {unit}", n.trim()))?;
        total = n
            .checked_mul(secs)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("`{text}` is too long"))?;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedeltas_read_authentiks_format_and_plain_durations() {
        let ok = [
            ("seconds=0", 0),
            ("hours=1;minutes=30", 5400),
            (" days=1 ; seconds=5 ", 86405),
            ("weeks=1", 604_800),
            ("90m", 5400),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_timedelta(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in [
            "hours=x",
            "fortnights=1",
            "hours=1;hours=2",
            "hours",
            "soon",
            "seconds=-1",
        ] {
            assert!(parse_timedelta(bad).is_err(), "{bad}");
        }
    }

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
