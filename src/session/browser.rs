//! A `User-Agent` header shortened to what a person recognises in a list of their sessions
//! ("Firefox 128 on Linux"). Only the label is kept, never the header.

/// The label for `user_agent`: browser and major version, then the system, from a fixed list
/// of names; "Unknown browser" for anything else. At most 40 characters, printable ASCII
/// only, so nothing a client sends reaches a page or log beyond the fixed names and digits.
pub fn label(user_agent: &str) -> String {
    let browser = browser(user_agent);
    let system = system(user_agent);
    let text = match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b,
        (None, Some(s)) => format!("Browser on {s}"),
        (None, None) => "Unknown browser".to_string(),
    };
    text.chars().take(40).collect()
}

/// Products, most specific first: Edge and Opera also say Chrome, Chrome also says Safari.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("HeadlessChrome/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
    ("curl/", "curl"),
];

fn browser(ua: &str) -> Option<String> {
    BROWSERS.iter().find_map(|(token, name)| {
        let rest = &ua[ua.find(token)? + token.len()..];
        // Safari names its version under `Version/`; only when it also says Safari.
        if *name == "Safari" && !ua.contains("Safari/") {
            return None;
        }
        let major: String = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .take(5)
            .collect();
        Some(if major.is_empty() {
            (*name).to_string()
        } else {
            format!("{name} {major}")
        })
    })
}

/// Systems, most specific first: Android also says Linux, iPhone also says Mac OS X.
const SYSTEMS: &[(&str, &str)] = &[
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
];

fn system(ua: &str) -> Option<String> {
    SYSTEMS
        .iter()
        .find(|(token, _)| ua.contains(token))
        .map(|(_, name)| (*name).to_string())
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
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", "Chrome 131 on Linux"),
            ("curl/8.5.0", "curl 8"),
            ("", "Unknown browser"),
            ("<script>alert(1)</script>", "Unknown browser"),
            // Whatever follows a known name is not copied: only its digits.
            ("Firefox/<b>evil</b> (Linux)", "Firefox on Linux"),
            ("Chrome/99999999999999999999", "Chrome 99999"),
        ];
        for (ua, want) in cases {
            assert_eq!(label(ua), want, "{ua}");
        }
    }
}
