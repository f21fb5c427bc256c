//! A `User-Agent` header shortened to what a person recognises ("Firefox 128 on Linux"): in
//! the settings page's list of sessions and on a magic link's "Was this you?" page. Only the
//! label is kept, never the header.

/// What an unreadable, missing or unknown User-Agent is shown as.
const UNKNOWN: &str = "Unknown browser";

/// A short, human description of a User-Agent: `Firefox 121 on Windows`, `Safari on iPhone`,
/// `curl 8`; `Unknown browser` for anything else.
///
/// # Security
/// Only fixed names and digits come out: whoever signs in (or asks for a magic link) writes
/// the User-Agent, and a page that lists sessions or asks "Was this you?" must not show them
/// a line of their own choosing. Only the label is kept, never the header.
pub fn label(ua: &str) -> String {
    match (product(ua), platform(ua)) {
        (Some(name), Some(os)) => format!("{name} on {os}"),
        (Some(name), None) => name,
        (None, Some(os)) => format!("A browser on {os}"),
        (None, None) => UNKNOWN.into(),
    }
}

/// The browser and its major version, from the most specific token present.
fn product(ua: &str) -> Option<String> {
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
    const BROWSERS: &[(&str, &str)] = &[
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("HeadlessChrome/", "Headless Chrome"),
        ("CriOS/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("curl/", "curl"),
    ];
    for (token, name) in BROWSERS {
        if let Some(version) = version_after(ua, token) {
            return Some(format!("{name} {version}"));
        }
    }
    if ua.contains("Safari/") && ua.contains("AppleWebKit/") {
        return Some(match version_after(ua, "Version/") {
            Some(v) => format!("Safari {v}"),
            None => "Safari".into(),
        });
    }
    None
}

/// The major version following `token`, if `token` is there.
fn version_after(ua: &str, token: &str) -> Option<String> {
    let at = ua.find(token)? + token.len();
    let major: String = ua[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .take(6)
        .collect();
    Some(major).filter(|m| !m.is_empty())
}

fn platform(ua: &str) -> Option<&'static str> {
    const PLATFORMS: &[(&str, &str)] = &[
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Android", "Android"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ];
    PLATFORMS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn user_agents_become_short_labels_from_fixed_names() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome 120 on Windows"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61", "Edge 120 on Windows"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "Safari 17 on iPhone"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15", "Safari 17 on macOS"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36", "Chrome 119 on Android"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", "Headless Chrome 131 on Linux"),
            ("curl/8.5.0", "curl 8"),
            ("", "Unknown browser"),
            ("<script>alert(1)</script>", "Unknown browser"),
            // Whatever follows a known name is not copied: only its digits, and a name
            // without a version is not believed.
            ("Firefox/<b>evil</b> (Linux)", "A browser on Linux"),
            ("Chrome/99999999999999999999", "Chrome 999999"),
        ];
        for (ua, want) in cases {
            assert_eq!(label(ua), want, "{ua}");
        }
    }
}
