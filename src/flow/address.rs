//! E-mail addresses a user types: a small, strict check of RFC 5321's mailbox syntax (dot-atom
//! local part, host name or address literal), so the flow needs no mail library to decide
//! whether an address is worth sending a code to.

/// Whether `a` is a deliverable-looking mailbox: `local@domain`, at most 254 bytes, a local
/// part of at most 64 bytes made of atoms (letters, digits, ``!#$%&'*+-/=?^_`{|}~``, and
/// non-ASCII letters as RFC 6531 allows) joined by single dots, and a domain of
/// letter-digit-hyphen labels (no hyphen at either end) or an address literal `[192.0.2.1]`.
/// Quoted local parts are refused: nobody types them, and they carry spaces and `@`s.
pub(crate) fn valid(a: &str) -> bool {
    if a.len() > 254 {
        return false;
    }
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    local_part(local) && domain_part(domain)
}

fn local_part(local: &str) -> bool {
    local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

fn atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && c.is_alphanumeric())
}

fn domain_part(domain: &str) -> bool {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return literal.parse::<std::net::Ipv4Addr>().is_ok()
            || literal
                .strip_prefix("IPv6:")
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !domain.is_empty() && domain.len() <= 253 && domain.split('.').all(label)
}

fn label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.chars().all(|c| c.is_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn ordinary_addresses_are_valid() {
        for good in [
            "alice@example.com",
            "a@b",
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "user@localhost",
            "x@[192.0.2.1]",
            "x@[IPv6:2001:db8::1]",
            "jörg@bücher.example",
            "under_score-dash@ex-ample.test",
        ] {
            assert!(valid(good), "{good:?} refused");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(250));
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "al ice@example.com",
            "alice@exa mple.com",
            "alice@@example.com",
            "a@b@c",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@.example.com",
            "alice@example..com",
            "alice@-example.com",
            "alice@example-.com",
            "\"quoted\"@example.com",
            "alice@example.com\r\nBcc: x@y",
            "alice@example.com\0",
            "a<b>@example.com",
            "alice@[300.1.1.1]",
            "alice@exam_ple.com",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            assert!(!valid(bad), "{bad:?} accepted");
        }
    }
}
