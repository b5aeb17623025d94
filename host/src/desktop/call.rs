//! Call rules: which commands a call allows in each state.
//!
//! allowed = what the agent's connection state allows (given the other calls
//! on the same connector) ∧ what the connector supports. The desktop sends
//! the result with every call update and refuses anything outside it before
//! the command reaches the connector.

use cti_plugin_api::{Capabilities, CommandKind as K, ConnectionState as S, Direction};

/// What the other calls of the same connector look like, as far as one
/// call's allowed actions depend on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Others {
    /// Another call of this connector is connected.
    pub connected: bool,
    /// Another call of this connector is held.
    pub held: bool,
    /// Another call of this connector is being placed (a consultation
    /// still ringing).
    pub dialing: bool,
}

/// What the state allows, before the connector's capabilities.
pub fn state_allows(state: S, direction: Direction, muted: bool, others: Others) -> Capabilities {
    // Bits, not a Vec: this runs for every event (no allocation).
    let mut caps = Capabilities::NONE;
    let mut kinds = |ks: &[K]| {
        for k in ks {
            caps |= Capabilities::of(*k);
        }
    };
    match state {
        S::Alerting if direction == Direction::Inbound => kinds(&[K::ANSWER, K::REJECT]),
        S::Alerting | S::Initiated | S::Queued => kinds(&[K::HANGUP]),
        S::Connected => {
            kinds(&[
                K::HANGUP,
                K::HOLD,
                K::SEND_DTMF,
                K::BLIND_TRANSFER,
                K::CONSULT,
                K::SEND_MESSAGE,
                K::SEND_TYPING,
            ]);
            kinds(&[if muted { K::UNMUTE } else { K::MUTE }]);
            if others.held {
                kinds(&[
                    K::ALTERNATE,
                    K::CONFERENCE,
                    K::COMPLETE_TRANSFER,
                    K::CANCEL_CONSULT,
                ]);
            }
        }
        S::Held => {
            kinds(&[K::RETRIEVE, K::HANGUP]);
            if others.connected {
                kinds(&[
                    K::ALTERNATE,
                    K::CONFERENCE,
                    K::COMPLETE_TRANSFER,
                    K::CANCEL_CONSULT,
                ]);
            } else if others.dialing {
                // A consultation still ringing can be given up or completed
                // (the far end gets the call when it answers).
                kinds(&[K::COMPLETE_TRANSFER, K::CANCEL_CONSULT]);
            }
        }
        S::Null | S::Failed => {}
    }
    caps
}

/// The actions a call allows: the state's ∧ the connector's.
pub fn allowed(
    state: S,
    direction: Direction,
    muted: bool,
    others: Others,
    connector: Capabilities,
) -> Capabilities {
    state_allows(state, direction, muted, others).and(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Capabilities {
        Capabilities(u64::MAX)
    }

    fn names(c: Capabilities) -> Vec<String> {
        c.kinds().map(|k| k.to_string()).collect()
    }

    #[test]
    fn every_state_has_its_actions() {
        let none = Others::default();
        let inbound = Direction::Inbound;
        assert_eq!(
            names(allowed(S::Alerting, inbound, false, none, all())),
            ["Answer", "Reject"]
        );
        assert_eq!(
            names(allowed(
                S::Alerting,
                Direction::Outbound,
                false,
                none,
                all()
            )),
            ["Hangup"]
        );
        assert_eq!(
            names(allowed(
                S::Initiated,
                Direction::Outbound,
                false,
                none,
                all()
            )),
            ["Hangup"]
        );
        assert_eq!(
            names(allowed(S::Queued, inbound, false, none, all())),
            ["Hangup"]
        );
        assert_eq!(
            names(allowed(S::Connected, inbound, false, none, all())),
            [
                "Hangup",
                "Hold",
                "SendDtmf",
                "Mute",
                "BlindTransfer",
                "Consult",
                "SendMessage",
                "SendTyping"
            ]
        );
        assert!(allowed(S::Connected, inbound, true, none, all()).contains(K::UNMUTE));
        assert!(!allowed(S::Connected, inbound, true, none, all()).contains(K::MUTE));
        assert_eq!(
            names(allowed(S::Held, inbound, false, none, all())),
            ["Hangup", "Retrieve"]
        );
        assert!(allowed(S::Null, inbound, false, none, all())
            .kinds()
            .next()
            .is_none());
        assert!(allowed(S::Failed, inbound, false, none, all())
            .kinds()
            .next()
            .is_none());
    }

    #[test]
    fn two_calls_enable_alternate_and_conference() {
        let held_other = Others {
            held: true,
            ..Others::default()
        };
        let c = allowed(S::Connected, Direction::Inbound, false, held_other, all());
        assert!(c.contains(K::ALTERNATE) && c.contains(K::CONFERENCE));
        let connected_other = Others {
            connected: true,
            ..Others::default()
        };
        let h = allowed(S::Held, Direction::Inbound, false, connected_other, all());
        assert!(h.contains(K::ALTERNATE) && h.contains(K::COMPLETE_TRANSFER));
        let dialing = Others {
            dialing: true,
            ..Others::default()
        };
        let h = allowed(S::Held, Direction::Inbound, false, dialing, all());
        assert!(h.contains(K::CANCEL_CONSULT) && h.contains(K::COMPLETE_TRANSFER));
        assert!(!h.contains(K::CONFERENCE) && !h.contains(K::ALTERNATE));
    }

    #[test]
    fn connector_capabilities_limit_the_state() {
        let caps = Capabilities::from_kinds(&[K::ANSWER, K::HANGUP]);
        assert_eq!(
            names(allowed(
                S::Alerting,
                Direction::Inbound,
                false,
                Others::default(),
                caps
            )),
            ["Answer"]
        );
        assert_eq!(
            names(allowed(
                S::Connected,
                Direction::Inbound,
                false,
                Others::default(),
                caps
            )),
            ["Hangup"]
        );
    }
}
