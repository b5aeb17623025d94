//! Privacy helpers: keep callers' numbers out of logs.
//!
//! Contact-center logs are shipped, indexed and kept far longer than call
//! records, so a caller's number (ANI), the number dialled (DNIS) and
//! transfer targets are masked before they reach a log line:
//!
//! - [`mask_number`] masks one number or address: every digit but the last
//!   four is hidden (`+14255550100` → `+***0100`), and never more than half
//!   of the digits are shown (`5550123` → `***123`, extension `1001` →
//!   `***01`). The number of hidden digits is not revealed. The country and
//!   area code are hidden too: in an 11-digit NANP number they would leave
//!   only three unknown digits.
//! - [`redact_numbers`] masks every phone-number-like run (seven digits or
//!   more, with `+ - . ( )` and spaces between groups) inside free text: a
//!   plugin's log message or panic text.
//!
//! The host masks its own log lines the same way unless the manifest says
//! `[host] log_numbers = "full"`; plugins should log numbers through
//! [`mask_number`] (or a message through [`redact_numbers`]).

use std::borrow::Cow;

/// The most trailing digits [`mask_number`] leaves visible.
pub const VISIBLE_DIGITS: usize = 4;

/// What stands for the hidden digits (ASCII, so every log pipeline keeps it).
pub const HIDDEN: &str = "***";

/// The fewest digits that make a run of text a phone number for
/// [`redact_numbers`] (shorter runs are counts, ports, extensions…).
pub const MIN_NUMBER_DIGITS: usize = 7;

/// Masks a phone number or address for a log line.
///
/// - Numbers keep a leading `+` and their last digits (at most
///   [`VISIBLE_DIGITS`], at most half of them): `+1 (425) 555-0100` →
///   `+***0100`.
/// - URIs keep their scheme and host and mask the user part:
///   `sip:+14255550100@pbx.example.com` → `sip:+***0100@pbx.example.com`.
/// - Names (chat addresses) keep their first character: `alice@example.com`
///   → `a***@example.com`.
/// - The empty string stays empty.
pub fn mask_number(number: &str) -> String {
    let number = number.trim();
    if number.is_empty() {
        return String::new();
    }
    // scheme:user@host — mask the user part only.
    let (scheme, rest) = match number.split_once(':') {
        Some((s, r))
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) && !r.is_empty() =>
        {
            (&number[..=s.len()], r)
        }
        _ => ("", number),
    };
    let (user, host) = match rest.rsplit_once('@') {
        Some((u, h)) => (u, Some(h)),
        None => (rest, None),
    };
    let mut out = String::with_capacity(number.len().min(64));
    out.push_str(scheme);
    out.push_str(&mask_user(user));
    if let Some(h) = host {
        out.push('@');
        out.push_str(h);
    }
    out
}

fn mask_user(user: &str) -> String {
    let digits: Vec<char> = user.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        // A name: its first character only.
        return match user.chars().next() {
            Some(c) => format!("{c}{HIDDEN}"),
            None => String::new(),
        };
    }
    let visible = VISIBLE_DIGITS.min(digits.len() / 2);
    let mut out = String::with_capacity(HIDDEN.len() + visible + 1);
    if user.starts_with('+') {
        out.push('+');
    }
    out.push_str(HIDDEN);
    out.extend(&digits[digits.len() - visible..]);
    out
}

/// Masks every phone-number-like run in `text` (see the module docs); text
/// without one is returned as is, without allocating.
pub fn redact_numbers(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `text` already in `out`
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i].is_ascii_digit()
            || (b[i] == b'+' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            && (i == 0 || !is_word(b[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let (mut end, mut digits, before_last) = number_run(b, i);
        if end < b.len() && is_word(b[end]) {
            // `555-0100-2abc`: the last group is glued to a word; the
            // groups before it may still be a number.
            (end, digits) = before_last.unwrap_or((end, 0));
        }
        if digits >= MIN_NUMBER_DIGITS {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            // Every index here sits on an ASCII byte, so on a char boundary.
            o.push_str(&text[copied..i]);
            o.push_str(&mask_number(&text[i..end]));
            copied = end;
        }
        i = end.max(i + 1);
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// The end of the number starting at `start` (just after its last digit),
/// how many digits it has, and the same for the number without its last
/// group of digits (if it has more than one group).
fn number_run(b: &[u8], start: usize) -> (usize, usize, Option<(usize, usize)>) {
    let mut j = start;
    if b[j] == b'+' {
        j += 1;
    }
    let (mut digits, mut end) = (0, j);
    let mut before_last = None;
    while j < b.len() {
        match b[j] {
            c if c.is_ascii_digit() => {
                if end != j {
                    // A new group starts after a separator.
                    before_last = Some((end, digits));
                }
                digits += 1;
                j += 1;
                end = j;
            }
            // One separator between groups: `555-0100`, `(425) 555`.
            b' ' | b'-' | b'.' | b'(' | b')' | b'/' => {
                let next = b.get(j + 1).copied();
                let ok = match next {
                    Some(n) if n.is_ascii_digit() => true,
                    Some(b'(') | Some(b' ') => b[j] == b')' || b[j] == b' ' && next == Some(b'('),
                    _ => false,
                };
                if !ok {
                    break;
                }
                j += 1;
            }
            _ => break,
        }
    }
    (end, digits, before_last)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// Shortens `text` to at most `max` characters (on a char boundary),
/// marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_last_four_digits() {
        assert_eq!(mask_number("+14255550100"), "+***0100");
        assert_eq!(mask_number("+1 (425) 555-0100"), "+***0100");
        assert_eq!(mask_number("14255550100"), "***0100");
        assert_eq!(mask_number("5550123"), "***123");
        assert_eq!(mask_number("1001"), "***01");
        assert_eq!(mask_number("7"), "***");
        assert_eq!(mask_number(""), "");
        assert_eq!(mask_number("  "), "");
    }

    #[test]
    fn addresses_mask_their_user_part() {
        assert_eq!(
            mask_number("sip:+14255550100@pbx.example.com"),
            "sip:+***0100@pbx.example.com"
        );
        assert_eq!(mask_number("alice@example.com"), "a***@example.com");
        assert_eq!(mask_number("tel:+14255550100"), "tel:+***0100");
        assert_eq!(mask_number("anonymous"), "a***");
        assert_eq!(mask_number("Élodie"), "É***");
    }

    #[test]
    fn the_full_number_never_survives() {
        for n in ["+14255550100", "+442079460958", "0033612345678", "5550123"] {
            let m = mask_number(n);
            assert!(!m.contains(&n[n.len() - 5..]), "{n} -> {m}");
        }
    }

    #[test]
    fn text_keeps_everything_but_numbers() {
        assert_eq!(
            redact_numbers("call from +14255550100 to 1001 ringing"),
            "call from +***0100 to 1001 ringing"
        );
        assert_eq!(
            redact_numbers("dialling +1 (425) 555-0100."),
            "dialling +***0100."
        );
        assert_eq!(redact_numbers("(425) 555-0100"), "(***0100");
        assert_eq!(redact_numbers("x 4255550100-2abc"), "x ***0100-2abc");
        // Ids, hex and words with digits are left alone.
        for s in [
            "sim-18b2f3a9c1d2-1",
            "call abc1234567 and x_12345678",
            "port 5060, 3 calls",
            "no numbers here",
            "",
        ] {
            assert_eq!(redact_numbers(s), s, "{s}");
            assert!(matches!(redact_numbers(s), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééééé", 2), "éé…");
    }
}
