//! Chat transcripts, kept the same way by the desktop and by controls.
//!
//! The desktop appends one line per `MessageReceived` / `MessageSent` to the
//! interaction's session (`SessionView::transcript`); the events themselves
//! carry the message, not the session. A control that keeps its own copy of
//! the desktop (a web page, say) applies the same rule with
//! [`append_transcript`], so its copy matches what a snapshot would say.

use abi_stable::std_types::{RString, RVec};

use crate::ffi::EventKind;

/// Lines the desktop keeps per session; older lines are dropped first.
pub const TRANSCRIPT_LINES: usize = 1000;

/// Who wrote the agent's own lines.
pub const AGENT: &str = "agent";

/// The transcript line of a chat event: `party: text` for a message from
/// the far end (`customer: text` when the connector names nobody),
/// `agent: text` for the agent's; `None` for any other event.
pub fn transcript_line(kind: EventKind, party: &str, text: &str) -> Option<String> {
    let who = match kind {
        EventKind::MESSAGE_RECEIVED if party.is_empty() => "customer",
        EventKind::MESSAGE_RECEIVED => party,
        EventKind::MESSAGE_SENT => AGENT,
        _ => return None,
    };
    Some(format!("{who}: {text}"))
}

/// Appends the line of a chat event to a transcript (a session's
/// `transcript`), keeping at most [`TRANSCRIPT_LINES`]. Returns whether a
/// line was added.
pub fn append_transcript(
    transcript: &mut RVec<RString>,
    kind: EventKind,
    party: &str,
    text: &str,
) -> bool {
    let Some(line) = transcript_line(kind, party, text) else {
        return false;
    };
    if transcript.len() >= TRANSCRIPT_LINES {
        transcript.remove(0);
    }
    transcript.push(RString::from(line));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_who_wrote_them() {
        let k = EventKind::MESSAGE_RECEIVED;
        assert_eq!(
            transcript_line(k, "alice@x", "hi").as_deref(),
            Some("alice@x: hi")
        );
        assert_eq!(
            transcript_line(k, "", "hi").as_deref(),
            Some("customer: hi")
        );
        let sent = transcript_line(EventKind::MESSAGE_SENT, "alice@x", "hello");
        assert_eq!(sent.as_deref(), Some("agent: hello"));
        assert_eq!(
            transcript_line(EventKind::TYPING, "alice@x", "composing"),
            None
        );
    }

    #[test]
    fn the_oldest_line_goes_first() {
        let mut t = RVec::new();
        for i in 0..TRANSCRIPT_LINES + 5 {
            assert!(append_transcript(
                &mut t,
                EventKind::MESSAGE_SENT,
                "",
                &i.to_string()
            ));
        }
        assert_eq!(t.len(), TRANSCRIPT_LINES);
        assert_eq!(t[0].as_str(), "agent: 5");
        assert!(!append_transcript(&mut t, EventKind::ESTABLISHED, "", "x"));
    }
}
