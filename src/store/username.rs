//! What makes two usernames the same account: RFC 8265's UsernameCaseMapped profile.

use precis_profiles::precis_core::profile::PrecisFastInvocation;
use precis_profiles::UsernameCaseMapped;

/// The longest username accepted, in characters after canonicalisation.
pub const MAX_USERNAME_CHARS: usize = 64;

/// The canonical form of a username, the form accounts are stored and compared under: RFC 8265
/// UsernameCaseMapped (full-width characters mapped to their normal width, case-folded to
/// lower case, Unicode NFC). So `Alice`, `ALICE` and `ａｌｉｃｅ` are all `alice`.
///
/// `None` when the text is not a username under that profile: empty, or with a space, a
/// control, a symbol or another character the profile refuses.
///
/// # Security
/// Every lookup and every new account goes through this one function, so an account cannot
/// be shadowed by another spelling of the same name (`Admin` next to `admin`).
pub fn canonical_username(text: &str) -> Option<String> {
    UsernameCaseMapped::enforce(text)
        .ok()
        .map(|c| c.into_owned())
}

/// Whether `name` may be used for a new account, as typed by an operator; returns its
/// canonical form. Letters and digits of any script are allowed, and `.`, `_`, `-`, `@`
/// (e-mail addresses as usernames); nothing that could break a header listing
/// (`,`, spaces, controls).
///
/// # Errors
/// A sentence saying what is allowed.
pub fn new_username(name: &str) -> Result<String, String> {
    let refuse = || {
        format!(
            "`{}` is not a valid username (1-{MAX_USERNAME_CHARS} letters or digits of any script, and . _ - @)",
            name.escape_debug()
        )
    };
    let canonical = canonical_username(name).ok_or_else(refuse)?;
    let ok = canonical.chars().count() <= MAX_USERNAME_CHARS
        && canonical
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(canonical)
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_name_are_one_canonical_form() {
        for (typed, canonical) in [
            ("alice", "alice"),
            ("Alice", "alice"),
            ("ALICE", "alice"),
            ("ａｌｉｃｅ", "alice"),
            ("José", "josé"),
            // e + combining acute is NFC-composed.
            ("Jose\u{301}", "josé"),
            ("ÉMILIE", "émilie"),
            ("Δημήτρης", "δημήτρης"),
            ("alice@example.com", "alice@example.com"),
        ] {
            assert_eq!(
                canonical_username(typed).as_deref(),
                Some(canonical),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn new_usernames_refuse_what_cannot_be_a_name() {
        for bad in [
            "",
            "a b",
            "a,b",
            "a\nb",
            "a\u{0}b",
            "a\tb",
            "alice/../bob",
            "a:b",
            "☃",
            // Invisible or reordering characters that would make two names look alike.
            "ali\u{200B}ce",
            "alice\u{202E}",
            "\u{FEFF}alice",
            &"x".repeat(65),
        ] {
            assert!(new_username(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(new_username("Zoë").as_deref(), Ok("zoë"));
        assert_eq!(
            new_username("Bob.Smith-2_x@host").as_deref(),
            Ok("bob.smith-2_x@host")
        );
    }
}
