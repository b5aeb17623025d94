//! Drives [`Core`] with arbitrary input, for the `xmpp_core` fuzz target and
//! the stable replay of its seeds (`tests/tests/fuzz_seeds.rs` in cti-e2e).
//! Not part of the plugin's API.
//!
//! Input: chunks separated by 0xFF. A chunk's first byte picks what it is
//! (low four bits) and which customer or call it concerns (high four):
//! 0–3 a stanza (the rest is its XML; with 0/1 the `from` of a known
//! customer is forced, so conversations really open), 4 answer, 5 reply, 6
//! hang up, 7 reject, 8 typing, 9 transfer.

use std::time::{Duration, Instant};

use cti_plugin_api::{Command, CommandKind, ConnectorEvent};
use tokio_xmpp::{
    jid::{BareJid, Jid},
    minidom::Element,
    parsers::{message::Message, presence::Presence},
};

use crate::core::{Core, CoreConfig};

const CUSTOMERS: [&str; 3] = [
    "alice@cti.test/web",
    "bob@cti.test/phone",
    "agent2@cti.test/cti-host",
];

/// Runs `data` through a fresh core; every event raised goes to `on_event`.
pub fn drive(data: &[u8], mut on_event: impl FnMut(&ConnectorEvent)) {
    let cfg = CoreConfig {
        reject_message: "Sorry".into(),
        closing_message: "Bye".into(),
        transfer_message: "Moving you to {target}".into(),
        transfer_peers: vec!["*@cti.test".into()],
        history_lines: 4,
        forward_for: Duration::from_secs(60),
    };
    let mut core = Core::new(BareJid::new("agent@cti.test").expect("a JID"), cfg);
    let t0 = Instant::now();
    for (step, chunk) in data.split(|b| *b == 0xFF).take(32).enumerate() {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        let now = t0 + Duration::from_secs(step as u64 * 10);
        let calls = core.calls();
        let call_id = calls
            .get(usize::from(op >> 4) % calls.len().max(1))
            .map(|c| c.call_id.to_string())
            .unwrap_or_default();
        let command = |kind: CommandKind, text: &str| {
            let mut c = Command::new(kind, call_id.as_str());
            c.text = text.into();
            c.target = text.into();
            c
        };
        let text = String::from_utf8_lossy(rest).into_owned();
        let mut raised: Vec<ConnectorEvent> = Vec::new();
        match op & 0x0F {
            k @ 0..=3 => {
                let Some(el) = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|t| t.parse::<Element>().ok())
                else {
                    continue;
                };
                let forced = (k < 2)
                    .then(|| Jid::new(CUSTOMERS[usize::from(op >> 4) % CUSTOMERS.len()]).ok())
                    .flatten();
                if let Ok(mut m) = Message::try_from(el.clone()) {
                    if forced.is_some() {
                        m.from = forced;
                    }
                    raised = core.on_message(m, now).events;
                } else if let Ok(mut p) = Presence::try_from(el) {
                    if forced.is_some() {
                        p.from = forced;
                    }
                    raised = core.on_presence(p).events;
                }
            }
            5 => {
                let c = command(CommandKind::SEND_MESSAGE, &text);
                if core.prepare_send(&c).is_ok() {
                    raised.extend(core.sent(&call_id, &text));
                }
            }
            9 => {
                let c = command(CommandKind::BLIND_TRANSFER, &text);
                if let Ok((target, _)) = core.prepare_transfer(&c) {
                    raised = core.transferred(&call_id, &target, now);
                }
            }
            k @ (4 | 6 | 7 | 8) => {
                let kind = match k {
                    4 => CommandKind::ANSWER,
                    6 => CommandKind::HANGUP,
                    7 => CommandKind::REJECT,
                    _ => CommandKind::SEND_TYPING,
                };
                if let Ok(out) = core.execute(&command(kind, &text), step % 2 == 0) {
                    raised = out.events;
                }
            }
            _ => {}
        }
        for e in &raised {
            on_event(e);
        }
    }
}
