//! Who asked for a magic link: the browser (a short reading of its User-Agent), the client
//! address and the time, recorded from the request that sent the link, and shown to whoever
//! opens the link in another browser so they can tell a sign-in of theirs from someone else's.

use serde::{Deserialize, Serialize};

/// The request that sent a link, as the approval page shows it.
///
/// # Security
/// Everything here but the time comes from the asking client: an attacker can forge the
/// browser name, and the address is what the gateway saw (behind a trusted proxy, the
/// forwarded one). The page shows them as claims, next to the time, never as proof; the
/// approval itself is what lets the other browser go on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// A short description of the browser, e.g. `Chrome 120 on Linux`.
    pub browser: String,
    /// The client address of the request that sent the link.
    pub address: String,
    /// Unix seconds when the link was sent.
    pub at: i64,
}

impl Requester {
    /// The requester of a send made from `user_agent` at `address`, now.
    pub(crate) fn new(user_agent: &str, address: &str, now: i64) -> Self {
        Requester {
            browser: browser(user_agent),
            address: address.chars().take(64).collect(),
            at: now,
        }
    }

    /// How long ago the link was sent, as people say it: `3 minutes ago`.
    pub fn ago(&self, now: i64) -> String {
        ago(now.saturating_sub(self.at))
    }
}

/// A short, human description of a User-Agent ([`crate::session::browser::label`]).
///
/// # Security
/// Only fixed names and digits come out: whoever asks for the link writes the User-Agent,
/// and a page that asks "Was this you?" must not show them a line of their own choosing.
pub(crate) fn browser(ua: &str) -> String {
    crate::session::browser::label(ua)
}

/// `just now`, `1 minute ago`, `3 minutes ago`, `2 hours ago`, `3 days ago`.
pub(crate) fn ago(secs: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match secs {
        s if s < 60 => "just now".into(),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 86_400 => plural(s / 3600, "hour"),
        s => plural(s / 86_400, "day"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_read_as_a_browser_and_a_platform() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36",
                "Chrome 120 on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
                "Headless Chrome 131 on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "Firefox 121 on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
                "Edge 120 on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
                "Safari 17 on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
                "Safari 17 on iPhone",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
                "Chrome 120 on iPhone",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
                "Chrome 120 on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0",
                "Opera 106 on Windows",
            ),
            ("curl/8.5.0", "curl 8"),
            ("", "Unknown browser"),
            ("   ", "Unknown browser"),
            ("Approve this, it is you/1.0", "Unknown browser"),
            ("Approve this (Windows)", "A browser on Windows"),
        ];
        for (ua, shown) in cases {
            assert_eq!(browser(ua), shown, "{ua}");
        }
    }

    #[test]
    fn hostile_user_agents_show_only_fixed_names_and_digits() {
        let long = format!("X{}", "A".repeat(10_000));
        assert_eq!(browser(&long), "Unknown browser");
        assert_eq!(browser("evil\r\nSet-Cookie:\u{7}x"), "Unknown browser");
        // A version is digits only, and short.
        assert_eq!(
            browser("Firefox/1234567890123 (Windows)"),
            "Firefox 123456 on Windows"
        );
        assert_eq!(browser("Chrome/<script>"), "Unknown browser");
        assert_eq!(browser("Chrome/<script> Linux"), "A browser on Linux");
    }

    #[test]
    fn times_read_as_people_say_them() {
        let cases = [
            (0, "just now"),
            (59, "just now"),
            (60, "1 minute ago"),
            (3 * 60 + 5, "3 minutes ago"),
            (3600, "1 hour ago"),
            (2 * 3600 + 1, "2 hours ago"),
            (3 * 86_400, "3 days ago"),
            (-5, "just now"),
        ];
        for (secs, said) in cases {
            assert_eq!(ago(secs), said, "{secs}");
        }
    }

    #[test]
    fn an_address_is_kept_short() {
        let r = Requester::new("", &"1".repeat(500), 7);
        assert_eq!(r.address.len(), 64);
        assert_eq!(r.at, 7);
        assert_eq!(r.ago(7 + 180), "3 minutes ago");
    }
}
