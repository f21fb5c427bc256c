//! Branding every page carries: the logo's address, the accent colours worked out for both
//! colour schemes so text on and beside them stays readable, and the footer links.

use crate::config::{Rgb, UiConfig};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where the gateway serves the configured logo, on every host it answers.
pub const LOGO_PATH: &str = "/.portcullis/logo";

/// The built-in accent.
pub(super) const DEFAULT_ACCENT: Rgb = Rgb(0x30, 0x56, 0xd3);
/// The lightest background links sit on in each scheme (the card; `base.html` uses the same
/// colours): light text must stand out on the lighter one, dark text on white.
pub(super) const LIGHT_BG: Rgb = Rgb(0xff, 0xff, 0xff);
pub(super) const DARK_BG: Rgb = Rgb(0x1b, 0x1f, 0x25);

/// WCAG 2.x AA for normal text.
pub(super) const MIN_CONTRAST: f64 = 4.5;

/// The accent as pages use it: a button colour with its text colour, and a link colour for
/// each scheme.
#[derive(Debug, Clone, Serialize)]
pub struct Accent {
    pub button: String,
    pub on_button: String,
    pub link_light: String,
    pub link_dark: String,
}

impl Accent {
    /// Works the colours out from `accent`. Button text is white or black, whichever stands
    /// out more (one of them always reaches 4.5:1); links take the accent darkened (light
    /// scheme) or lightened (dark scheme) just enough to reach 4.5:1 on the page.
    pub fn new(accent: Rgb) -> Accent {
        let white = Rgb(255, 255, 255);
        let black = Rgb(0, 0, 0);
        let on_button = if accent.contrast(&white) >= accent.contrast(&black) {
            white
        } else {
            black
        };
        Accent {
            button: accent.css(),
            on_button: on_button.css(),
            link_light: readable(accent, LIGHT_BG, black).css(),
            link_dark: readable(accent, DARK_BG, white).css(),
        }
    }
}

/// `c`, moved towards `towards` in small steps until it reaches [`MIN_CONTRAST`] on `bg`.
fn readable(c: Rgb, bg: Rgb, towards: Rgb) -> Rgb {
    (0..=20)
        .map(|i| c.mix(&towards, f64::from(i) / 20.0))
        .find(|m| m.contrast(&bg) >= MIN_CONTRAST)
        .unwrap_or(towards)
}

#[derive(Debug, Clone, Serialize)]
pub struct FooterLink {
    pub label: String,
    pub url: String,
}

/// What templates see as `brand`.
#[derive(Debug, Clone, Serialize)]
pub struct Brand {
    /// The logo's URL (with a version so a changed file is fetched anew), if one is set.
    pub logo: Option<String>,
    /// The accent colour and its contrasts.
    pub accent: Accent,
    /// The footer's links.
    pub footer_links: Vec<FooterLink>,
}

impl Brand {
    /// What `[ui]` says, prepared for templates.
    pub fn new(cfg: &UiConfig) -> Brand {
        let logo = cfg.logo.as_ref().map(|l| {
            let digest = Sha256::digest(&l.bytes);
            let v: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
            format!("{LOGO_PATH}?v={v}")
        });
        Brand {
            logo,
            accent: Accent::new(cfg.accent_color.unwrap_or(DEFAULT_ACCENT)),
            footer_links: cfg
                .footer_links
                .iter()
                .map(|l| FooterLink {
                    label: l.label.clone(),
                    url: l.url.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(s: &str) -> Rgb {
        Rgb::parse(s).unwrap()
    }

    #[test]
    fn every_accent_gets_readable_button_text_and_links_in_both_schemes() {
        // Pale, saturated, dark and mid-grey accents: the hard cases for contrast.
        for c in [
            "#3056d3", "#ffff00", "#00ff00", "#ffffff", "#000000", "#777777", "#ff0000", "#0b1f3a",
            "#f0e68c", "#808080", "#1e90ff",
        ] {
            let a = Accent::new(rgb(c));
            let button = rgb(&a.button);
            assert!(
                button.contrast(&rgb(&a.on_button)) >= MIN_CONTRAST,
                "{c}: button text {}",
                a.on_button
            );
            assert!(
                rgb(&a.link_light).contrast(&LIGHT_BG) >= MIN_CONTRAST,
                "{c}: light link {}",
                a.link_light
            );
            assert!(
                rgb(&a.link_dark).contrast(&DARK_BG) >= MIN_CONTRAST,
                "{c}: dark link {}",
                a.link_dark
            );
        }
    }

    #[test]
    fn a_readable_accent_is_kept_as_is() {
        let a = Accent::new(DEFAULT_ACCENT);
        assert_eq!(a.button, "#3056d3");
        assert_eq!(a.on_button, "#ffffff");
        assert_eq!(a.link_light, "#3056d3");
    }
}
