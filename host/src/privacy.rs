//! Callers' numbers in the host's logs: masked unless the manifest says
//! `[host] log_numbers = "full"`.
//!
//! Every log line that prints a number (ANI, DNIS, a dialled or transfer
//! target, a party) goes through [`number`]; free text that may hold one (a
//! plugin's log message, an error from a plugin) through [`text`]. Both use
//! the SDK's [`cti_plugin_api::sdk::privacy`] rules, so the host and the
//! plugins mask alike: `+14255550100` → `+***0100`.

use std::{
    borrow::Cow,
    sync::atomic::{AtomicBool, Ordering},
};

use cti_plugin_api::sdk::privacy::{mask_number, redact_numbers};

use crate::manifest::LogNumbers;

static FULL: AtomicBool = AtomicBool::new(false);

/// Sets the mode for the whole process (from the manifest, at start).
pub fn set_log_numbers(mode: LogNumbers) {
    FULL.store(mode == LogNumbers::Full, Ordering::Relaxed);
}

/// The mode in force.
pub fn log_numbers() -> LogNumbers {
    if FULL.load(Ordering::Relaxed) {
        LogNumbers::Full
    } else {
        LogNumbers::Masked
    }
}

/// A number or address as a log line may show it.
pub fn number(n: &str) -> Cow<'_, str> {
    match log_numbers() {
        LogNumbers::Full => Cow::Borrowed(n),
        LogNumbers::Masked => Cow::Owned(mask_number(n)),
    }
}

/// Free text as a log line may show it (numbers inside masked).
pub fn text(t: &str) -> Cow<'_, str> {
    match log_numbers() {
        LogNumbers::Full => Cow::Borrowed(t),
        LogNumbers::Masked => redact_numbers(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_by_default_full_on_request() {
        assert_eq!(number("+14255550100"), "+***0100");
        assert_eq!(text("from +14255550100"), "from +***0100");
        set_log_numbers(LogNumbers::Full);
        assert_eq!(number("+14255550100"), "+14255550100");
        assert_eq!(text("from +14255550100"), "from +14255550100");
        set_log_numbers(LogNumbers::Masked);
        assert_eq!(number("+14255550100"), "+***0100");
    }
}
