//! How the tools show bytes to a person and read them back.
//!
//! Keys, column names and values are bytes. They are shown as a double-quoted string when
//! they are valid UTF-8 without control characters other than newline, tab and carriage
//! return (with `"`, `\` and those three escaped), else as `0x` followed by lowercase hex,
//! so everything shown can be typed back. The shell's grammar reads both forms
//! back: a quoted string is its UTF-8 bytes, an unquoted `0x..` word with an even number of
//! hex digits is those bytes. Sizes are shown in binary units ([`human_size`]). Pure
//! functions, no state.

use std::fmt::Write as _;

/// Shows `bytes` as a quoted UTF-8 string, or `0x..` hex when they are not UTF-8 or hold
/// control characters the shell's quotes cannot spell.
pub fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s)
            if !s
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) =>
        {
            quote(s)
        }
        _ => hex(bytes),
    }
}

/// Shows `bytes` bare (no quotes) when they are a plain word of UTF-8 (letters, digits,
/// `_ - . : /`), otherwise as [`show_bytes`] does. Used for column names and table keys in
/// listings where quotes would only add noise.
pub fn show_name(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if is_plain_word(s) => s.to_owned(),
        _ => show_bytes(bytes),
    }
}

/// True when `s` needs no quoting in the shell grammar.
pub fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with("0x")
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '@'))
}

/// `s` in double quotes, with `"`, `\` and control characters escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `0x` followed by the bytes in lowercase hex (`0x` alone for no bytes).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Parses `0x` followed by an even number of hex digits; `None` for anything else.
pub fn parse_hex(word: &str) -> Option<Vec<u8>> {
    let digits = word.strip_prefix("0x")?;
    if digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() / 2);
    for pair in digits.as_bytes().chunks_exact(2) {
        let s = std::str::from_utf8(pair).ok()?;
        out.push(u8::from_str_radix(s, 16).ok()?);
    }
    Some(out)
}

/// A byte count in binary units for people: `512 B`, `1.2 KiB`, `3.0 MiB`, up to `EiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_bytes_quotes_utf8() {
        assert_eq!(show_bytes(b"alice"), "\"alice\"");
        assert_eq!(show_bytes(b"a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
    }

    #[test]
    fn show_bytes_hex_for_invalid_utf8() {
        assert_eq!(show_bytes(&[0xff, 0x00, 0x10]), "0xff0010");
    }

    #[test]
    fn show_bytes_hex_for_control_characters() {
        assert_eq!(show_bytes(&[0x01, 0x02]), "0x0102");
        assert_eq!(show_bytes(b"a\tb"), "\"a\\tb\"");
    }

    #[test]
    fn show_name_bare_for_plain_words() {
        assert_eq!(show_name(b"email"), "email");
        assert_eq!(show_name(b"first name"), "\"first name\"");
        assert_eq!(show_name(b"0x12"), "\"0x12\"");
    }

    #[test]
    fn parse_hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(parse_hex(&hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(parse_hex("0x"), Some(Vec::new()));
    }

    #[test]
    fn parse_hex_rejects_odd_or_non_hex() {
        assert_eq!(parse_hex("0xabc"), None);
        assert_eq!(parse_hex("0xzz"), None);
        assert_eq!(parse_hex("ab"), None);
    }

    #[test]
    fn human_size_picks_the_largest_whole_unit() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1_258_291), "1.2 MiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }
}
