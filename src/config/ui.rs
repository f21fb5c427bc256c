//! Validation of `[ui]`: the site title, operator templates, and branding (a logo file read
//! once at load, an accent colour, footer links). Everything is typed here so the pages never
//! re-check it.

use super::error::Problem;
use super::raw::RawUi;
use super::UiConfig;
use bytes::Bytes;
use std::path::{Path, PathBuf};

type Checked<T> = Result<T, Problem>;

/// The largest logo accepted: it is sent with every page that shows it.
pub(super) const MAX_LOGO_BYTES: usize = 512 * 1024;

/// An sRGB colour, parsed from `#rgb` or `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// Parses `#rgb` / `#rrggbb` (case-insensitive). Named colours and functions are not
    /// accepted: the contrast of the button text must be computable at load.
    pub fn parse(s: &str) -> Option<Rgb> {
        let hex = s.strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let digit = |i: usize, len: usize| u8::from_str_radix(&hex[i..i + len], 16).ok();
        match hex.len() {
            3 => Some(Rgb(digit(0, 1)? * 17, digit(1, 1)? * 17, digit(2, 1)? * 17)),
            6 => Some(Rgb(digit(0, 2)?, digit(2, 2)?, digit(4, 2)?)),
            _ => None,
        }
    }

    /// `#rrggbb`.
    pub fn css(&self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Relative luminance (WCAG 2.x).
    pub fn luminance(&self) -> f64 {
        let lin = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(self.0) + 0.7152 * lin(self.1) + 0.0722 * lin(self.2)
    }

    /// WCAG contrast ratio between two colours, 1.0 to 21.0.
    pub fn contrast(&self, other: &Rgb) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        let (hi, lo) = if a > b { (a, b) } else { (b, a) };
        (hi + 0.05) / (lo + 0.05)
    }

    /// This colour moved `t` (0..=1) of the way towards `to`.
    pub fn mix(&self, to: &Rgb, t: f64) -> Rgb {
        let m = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
        Rgb(m(self.0, to.0), m(self.1, to.1), m(self.2, to.2))
    }
}

/// The logo: its bytes and the content type found from them (not from the file name).
#[derive(Clone)]
pub struct Logo {
    /// The file's bytes.
    pub bytes: Bytes,
    /// Its media type, from its bytes.
    pub content_type: &'static str,
}

impl std::fmt::Debug for Logo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Logo({}, {} bytes)", self.content_type, self.bytes.len())
    }
}

/// A link in the page footer (privacy policy, help desk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterLink {
    /// The link's text.
    pub label: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
}

/// The image types a logo may be, recognised by their first bytes.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return Some("image/jpeg");
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some("image/gif");
    }
    if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    // SVG: text whose first element is <svg> (after an optional XML declaration, comments
    // and a doctype). Scripts in it never run: see `pages::logo`.
    let text = std::str::from_utf8(bytes).ok()?;
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            rest = r.split_once("?>")?.1.trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.split_once("-->")?.1.trim_start();
        } else if let Some(r) = rest.strip_prefix("<!") {
            rest = r.split_once('>')?.1.trim_start();
        } else {
            break;
        }
    }
    let after = rest.strip_prefix("<svg")?;
    after
        .starts_with(|c: char| c.is_whitespace() || c == '>')
        .then_some("image/svg+xml")
}

fn logo(path: &Path) -> Checked<Logo> {
    const KEY: &str = "ui.logo";
    let bytes = std::fs::read(path)
        .map_err(|e| Problem::new(KEY, format!("cannot read `{}`: {e}", path.display())))?;
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(Problem::new(
            KEY,
            format!(
                "`{}` is {} bytes; a logo may be at most {MAX_LOGO_BYTES}",
                path.display(),
                bytes.len()
            ),
        ));
    }
    let content_type = sniff(&bytes).ok_or_else(|| {
        Problem::new(
            KEY,
            format!(
                "`{}` is not a PNG, JPEG, GIF, WebP or SVG image",
                path.display()
            ),
        )
    })?;
    Ok(Logo {
        bytes: Bytes::from(bytes),
        content_type,
    })
}

fn footer_links(raw: &[super::raw::RawFooterLink]) -> Checked<Vec<FooterLink>> {
    raw.iter()
        .enumerate()
        .map(|(i, l)| {
            let key = |k: &str| format!("ui.footer_links[{i}].{k}");
            let label = l.label.trim();
            if label.is_empty() {
                return Err(Problem::new(key("label"), "must not be empty"));
            }
            let parsed = url::Url::parse(&l.url)
                .map_err(|e| Problem::new(key("url"), format!("`{}` is not a URL: {e}", l.url)))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(Problem::new(
                    key("url"),
                    format!("`{}` must be an http:// or https:// URL", l.url),
                ));
            }
            Ok(FooterLink {
                label: label.to_string(),
                url: parsed.to_string(),
            })
        })
        .collect()
}

/// `[ui]` checked. A relative `logo` path is read from the config file's folder (`base`).
pub(super) fn ui(raw: RawUi, base: &Path) -> Checked<UiConfig> {
    let accent_color = match &raw.accent_color {
        None => None,
        Some(s) => Some(Rgb::parse(s.trim()).ok_or_else(|| {
            Problem::new(
                "ui.accent_color",
                format!("`{s}` is not a colour like \"#3056d3\" (#rgb or #rrggbb)"),
            )
        })?),
    };
    let logo = match &raw.logo {
        None => None,
        Some(p) => Some(logo(&base.join(PathBuf::from(p)))?),
    };
    Ok(UiConfig {
        site_title: raw.site_title.unwrap_or_else(|| "Portcullis".into()),
        templates: raw.templates.map(PathBuf::from),
        logo,
        accent_color,
        footer_links: footer_links(&raw.footer_links)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_parse_only_as_hex() {
        assert_eq!(Rgb::parse("#3056d3"), Some(Rgb(0x30, 0x56, 0xd3)));
        assert_eq!(Rgb::parse("#FFF"), Some(Rgb(255, 255, 255)));
        for bad in [
            "3056d3",
            "#3056d",
            "#3056d3ff",
            "red",
            "#ggg",
            "",
            "#",
            "#+12",
        ] {
            assert_eq!(Rgb::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn contrast_matches_wcag_reference_values() {
        let white = Rgb(255, 255, 255);
        let black = Rgb(0, 0, 0);
        assert!((white.contrast(&black) - 21.0).abs() < 0.01);
        // #767676 on white is the classic 4.54:1.
        assert!((Rgb(0x76, 0x76, 0x76).contrast(&white) - 4.54).abs() < 0.01);
    }

    #[test]
    fn logo_types_are_recognised_by_their_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a...."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            sniff(
                b"<?xml version=\"1.0\"?>\n<!-- x --><svg xmlns=\"http://www.w3.org/2000/svg\"/>"
            ),
            Some("image/svg+xml")
        );
        for bad in [
            &b"<html><svg>"[..],
            b"<svgfoo>",
            b"GIF8",
            b"hello",
            b"",
            b"\x89PNG",
        ] {
            assert_eq!(sniff(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn raw(links: &[(&str, &str)]) -> RawUi {
        RawUi {
            footer_links: links
                .iter()
                .map(|(l, u)| super::super::raw::RawFooterLink {
                    label: l.to_string(),
                    url: u.to_string(),
                })
                .collect(),
            ..RawUi::default()
        }
    }

    #[test]
    fn footer_links_must_be_http_urls_with_a_label() {
        let ok = ui(
            raw(&[("Privacy", "https://example.com/privacy")]),
            Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!(ok.footer_links[0].url, "https://example.com/privacy");
        for (label, url, key) in [
            ("Help", "javascript:alert(1)", "ui.footer_links[0].url"),
            ("Help", "data:text/html,x", "ui.footer_links[0].url"),
            ("Help", "/relative", "ui.footer_links[0].url"),
            ("Help", "mailto:a@b.c", "ui.footer_links[0].url"),
            ("Help", "http://", "ui.footer_links[0].url"),
            ("  ", "https://example.com", "ui.footer_links[0].label"),
        ] {
            let e = ui(raw(&[(label, url)]), Path::new(".")).unwrap_err();
            assert_eq!(e.path, key, "{url}: {}", e.reason);
        }
    }

    #[test]
    fn unreadable_or_non_image_logo_is_refused_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("logo.txt"), "not an image").unwrap();
        std::fs::write(dir.path().join("big.png"), {
            let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
            v.resize(MAX_LOGO_BYTES + 1, 0);
            v
        })
        .unwrap();
        std::fs::write(dir.path().join("ok.png"), b"\x89PNG\r\n\x1a\nrest").unwrap();
        for name in ["missing.png", "logo.txt", "big.png"] {
            let r = RawUi {
                logo: Some(name.into()),
                ..RawUi::default()
            };
            let e = ui(r, dir.path()).unwrap_err();
            assert_eq!(e.path, "ui.logo", "{name}");
        }
        let r = RawUi {
            logo: Some("ok.png".into()),
            ..RawUi::default()
        };
        let cfg = ui(r, dir.path()).unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!(cfg.logo.unwrap().content_type, "image/png");
    }

    #[test]
    fn accent_colour_is_refused_unless_hex() {
        let r = RawUi {
            accent_color: Some("blue".into()),
            ..RawUi::default()
        };
        assert_eq!(ui(r, Path::new(".")).unwrap_err().path, "ui.accent_color");
    }
}
