//! Reading what the SMTP server received: the envelope, the MIME structure, the parts decoded
//! (7bit, quoted-printable or base64), and the code or link they carry.
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::Value;

/// One message as the SMTP server stored it, decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub file: String,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// Whether it arrived over TLS (STARTTLS or implicit).
    pub tls: bool,
    /// The SMTP AUTH user, if the client authenticated.
    pub auth_user: Option<String>,
    pub raw: String,
    /// Top-level headers, names lower-cased, values unfolded.
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone)]
pub struct Part {
    pub content_type: String,
    pub transfer_encoding: String,
    pub body: String,
}

impl Mail {
    pub fn from_record(file: &str, v: &Value) -> Mail {
        let raw = v["content"].as_str().unwrap_or_default().to_string();
        let (headers, body) = split_entity(&raw);
        let ct = header(&headers, "content-type").unwrap_or_default();
        let parts = if ct.to_ascii_lowercase().starts_with("multipart/") {
            let boundary = param(&ct, "boundary")
                .unwrap_or_else(|| panic!("multipart message without a boundary:\n{raw}"));
            split_multipart(&body, &boundary)
        } else {
            vec![make_part(&headers, &body)]
        };
        Mail {
            file: file.to_string(),
            mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
            rcpt_tos: v["rcpt_tos"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            tls: v["tls"].as_bool().unwrap_or(false),
            auth_user: v["auth_user"].as_str().map(str::to_string),
            raw,
            headers,
            parts,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.headers, name)
    }

    pub fn subject(&self) -> String {
        decode_encoded_words(&self.header("subject").unwrap_or_default())
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default()
    }

    fn part(&self, mime: &str) -> Option<&Part> {
        self.parts
            .iter()
            .find(|p| p.content_type.to_ascii_lowercase().starts_with(mime))
    }

    /// The decoded text/plain part (panics if there is none).
    pub fn text(&self) -> String {
        self.part("text/plain")
            .unwrap_or_else(|| panic!("no text/plain part in the message:\n{}", self.raw))
            .body
            .clone()
    }

    /// The decoded text/html part (panics if there is none).
    pub fn html(&self) -> String {
        self.part("text/html")
            .unwrap_or_else(|| panic!("no text/html part in the message:\n{}", self.raw))
            .body
            .clone()
    }

    /// Asserts the shape every sign-in message must have: multipart/alternative with a
    /// text/plain and a text/html part, and the expected subject.
    pub fn assert_shape(&self, subject: &str) {
        assert!(
            self.content_type()
                .to_ascii_lowercase()
                .starts_with("multipart/alternative"),
            "expected multipart/alternative, got {:?}:\n{}",
            self.content_type(),
            self.raw
        );
        assert!(
            self.part("text/plain").is_some(),
            "no text/plain part:\n{}",
            self.raw
        );
        assert!(
            self.part("text/html").is_some(),
            "no text/html part:\n{}",
            self.raw
        );
        assert_eq!(self.subject(), subject, "subject of:\n{}", self.raw);
    }

    /// The one-time code: the line of the text part that is only digits, `len` of them. The
    /// HTML part must carry the same code.
    pub fn code_of_len(&self, len: usize) -> String {
        let text = self.text();
        let codes: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.len() == len && l.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        assert_eq!(
            codes.len(),
            1,
            "expected exactly one line with a {len}-digit code in the text part:\n{text}"
        );
        let code = codes[0].to_string();
        assert!(
            self.html().contains(&code),
            "the HTML part does not carry the code {code}:\n{}",
            self.html()
        );
        code
    }

    pub fn code(&self) -> String {
        self.code_of_len(6)
    }

    /// The magic link (`http://.../.portcullis/link?token=...`) from the text part; the HTML
    /// part must carry the same link.
    pub fn link(&self) -> String {
        let text = self.text();
        let re = regex::Regex::new(r#"https?://[^\s"'<>]+/\.portcullis/link\?token=[^\s"'<>&]+"#)
            .unwrap();
        let links: Vec<String> = re
            .find_iter(&text)
            .map(|m| m.as_str().to_string())
            .collect();
        assert_eq!(
            links.len(),
            1,
            "expected exactly one sign-in link in the text part:\n{text}"
        );
        let link = links[0].clone();
        // Attribute values may be entity-escaped (`&#x2f;` for `/`): unescape as a browser does.
        let html = self
            .html()
            .replace("&#x2f;", "/")
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&#x3d;", "=")
            .replace("&#x3D;", "=")
            .replace("&amp;", "&");
        assert!(
            html.contains(&link),
            "the HTML part does not carry the link {link}:\n{html}"
        );
        link
    }

    /// The `token` query value of the link.
    pub fn link_token(&self) -> String {
        let u = url::Url::parse(&self.link()).unwrap();
        u.query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .expect("link without token")
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// A `key=value` or `key="value"` parameter of a header value.
fn param(value: &str, key: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Headers (unfolded) and body of a message or a MIME part.
fn split_entity(s: &str) -> (Vec<(String, String)>, String) {
    let (head, body) = match (s.find("\r\n\r\n"), s.find("\n\n")) {
        (Some(i), Some(j)) if j < i => (&s[..j], &s[j + 2..]),
        (Some(i), _) => (&s[..i], &s[i + 4..]),
        (None, Some(j)) => (&s[..j], &s[j + 2..]),
        (None, None) => (s, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (headers, body.to_string())
}

fn split_multipart(body: &str, boundary: &str) -> Vec<Part> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut chunks = body.split(delim.as_str());
    let _preamble = chunks.next();
    for chunk in chunks {
        if chunk.starts_with("--") {
            break; // the closing delimiter
        }
        let chunk = chunk
            .strip_prefix("\r\n")
            .or_else(|| chunk.strip_prefix('\n'))
            .unwrap_or(chunk);
        // The line break before the next delimiter belongs to the delimiter.
        let chunk = chunk
            .strip_suffix("\r\n")
            .or_else(|| chunk.strip_suffix('\n'))
            .unwrap_or(chunk);
        let (headers, body) = split_entity(chunk);
        parts.push(make_part(&headers, &body));
    }
    parts
}

fn make_part(headers: &[(String, String)], body: &str) -> Part {
    let content_type = header(headers, "content-type").unwrap_or_else(|| "text/plain".into());
    let transfer_encoding = header(headers, "content-transfer-encoding")
        .unwrap_or_else(|| "7bit".into())
        .to_ascii_lowercase();
    let decoded = match transfer_encoding.as_str() {
        "quoted-printable" => decode_qp(body),
        "base64" => {
            let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .unwrap_or_else(|e| panic!("bad base64 part: {e}\n{body}"));
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_string(),
    };
    Part {
        content_type,
        transfer_encoding,
        body: decoded.replace("\r\n", "\n"),
    }
}

/// Quoted-printable (RFC 2045 6.7): `=XX` escapes and `=` soft line breaks.
pub fn decode_qp(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `=?utf-8?b?...?=` / `=?utf-8?q?...?=` encoded words in a header (RFC 2047).
fn decode_encoded_words(s: &str) -> String {
    let re = regex::Regex::new(r"=\?([^?]+)\?([bBqQ])\?([^?]*)\?=").unwrap();
    let decoded = re.replace_all(s, |c: &regex::Captures| {
        let text = &c[3];
        match &c[2] {
            "b" | "B" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| text.to_string()),
            _ => decode_qp(&text.replace('_', " ")),
        }
    });
    // Whitespace between two adjacent encoded words is not part of the text.
    decoded.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_quoted_printable_soft_breaks_and_escapes() {
        assert_eq!(decode_qp("a=3Db=\r\nc =C3=A9"), "a=bc é");
    }

    #[test]
    fn parses_a_multipart_alternative_message() {
        let raw = "Subject: =?utf-8?b?SGVsbG8=?=\r\nContent-Type: multipart/alternative;\r\n boundary=\"XyZ\"\r\n\r\n--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nYour code:\r\n\r\n    123456\r\n\r\nbye=\r\n!\r\n--XyZ\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+MTIzNDU2PC9wPg==\r\n--XyZ--\r\n";
        let m = Mail::from_record(
            "x",
            &serde_json::json!({"content": raw, "rcpt_tos": ["a@b.c"], "mail_from": "f@g.h"}),
        );
        m.assert_shape("Hello");
        assert_eq!(m.code(), "123456");
        assert!(m.text().contains("bye!"));
        assert_eq!(m.html(), "<p>123456</p>");
    }
}
