//! The log-masking helpers: no panic (char boundaries), and no unmasked
//! phone number left in redacted text.
#![no_main]

use cti_plugin_api::sdk::privacy::{mask_number, redact_numbers, truncate, MIN_NUMBER_DIGITS};
use libfuzzer_sys::fuzz_target;

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let masked = mask_number(text);
    let digits_in = text.bytes().filter(u8::is_ascii_digit).count();
    if !text.contains('@') {
        let digits_out = masked.bytes().filter(u8::is_ascii_digit).count();
        assert!(
            digits_out <= 4 && digits_out <= digits_in,
            "{text:?} -> {masked:?}"
        );
    }
    let red = redact_numbers(text);
    // Every run of 7+ digits left is glued to a word (an id, not a number).
    let b = red.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start >= MIN_NUMBER_DIGITS {
                let glued = (start > 0 && is_word(b[start - 1])) || (i < b.len() && is_word(b[i]));
                assert!(glued, "{text:?} -> {red:?}");
            }
        } else {
            i += 1;
        }
    }
    let _ = truncate(text, 7);
});
