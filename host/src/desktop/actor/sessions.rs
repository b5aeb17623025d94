//! CTI lookup, screen pop and agent sessions.
//!
//! Every new interaction (except a consultation, which belongs to the call
//! it consults for) raises `LookupRequested`; the first `[[lookup]]` rule
//! that applies searches the contact directory with one of the
//! interaction's fields, and its 0 / 1 / N-match outcome becomes a session
//! (`LookupResolved`, `SessionOpened`). One session per interaction, several
//! at once; the answered interaction takes the focus; the session closes
//! when the work item completes.

use abi_stable::std_types::{ROption, RString, RVec};
use cti_plugin_api::{
    sdk::chat, Command, CommandKind, ConnectorEvent, Contact, ErrorKind, EventKind, KeyValue,
    Outcome, PluginError, SessionView,
};

use super::{rs, DesktopActor};
use crate::{
    directory::{ContactRecord, Directory},
    manifest::{LookupField, LookupOutcome, LookupRule, LookupSearch},
    plugin::CommandResult,
};

/// What the desktop knows of the sessions besides each call's own
/// [`Session`] (kept in the call's entry: one table lookup finds both, and
/// a call does not pay for a second table keyed by its id again).
#[derive(Default)]
pub(super) struct Sessions {
    focused: Option<RString>,
    next: u64,
}

/// One interaction's agent session, compact: the `SessionView` the
/// controls see is built from it when an event or a snapshot carries it.
#[derive(Debug)]
pub(super) struct Session {
    /// `s-{seq}`; also the sessions' order.
    seq: u64,
    outcome: LookupOutcome,
    contact: Option<Box<Contact>>,
    candidates: Vec<Contact>,
    transcript: RVec<RString>,
}

impl Session {
    fn view(&self, call_id: &RString, focused: bool) -> SessionView {
        SessionView {
            session_id: RString::from(format!("s-{}", self.seq)),
            call_id: call_id.clone(),
            outcome: rs(self.outcome.name()),
            contact: self.contact.as_deref().cloned().into(),
            candidates: self.candidates.iter().cloned().collect(),
            focused,
            transcript: self.transcript.clone(),
        }
    }
}

/// Candidates kept in a pick list.
const CANDIDATES: usize = 20;

fn contact(r: ContactRecord) -> Contact {
    Contact {
        id: r.id.into(),
        name: r.name.into(),
        phone: r.phone.into(),
        fields: r
            .fields
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect(),
    }
}

/// Runs one rule's search; `Err` is a directory failure.
fn search(dir: &Directory, rule: &LookupRule, value: &str) -> Result<Vec<ContactRecord>, String> {
    let r = match &rule.search {
        LookupSearch::Phone => dir.find_by_phone(value, CANDIDATES + 1),
        LookupSearch::Field(col) => dir.find_by_field(col, value, CANDIDATES + 1),
    };
    r.map_err(|e| e.to_string())
}

impl DesktopActor {
    /// The sessions, oldest first, for snapshots.
    pub(super) fn session_list(&self) -> RVec<SessionView> {
        let mut list: Vec<(u64, &RString, &Session)> = self
            .calls
            .iter()
            .filter_map(|(id, e)| e.session.as_deref().map(|s| (s.seq, id, s)))
            .collect();
        list.sort_unstable_by_key(|(seq, _, _)| *seq);
        list.into_iter()
            .map(|(_, id, s)| s.view(id, self.sessions.focused.as_ref() == Some(id)))
            .collect()
    }

    /// The call whose session is the newest.
    fn newest_session(&self) -> Option<RString> {
        self.calls
            .iter()
            .filter_map(|(id, e)| e.session.as_ref().map(|s| (s.seq, id)))
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, id)| id.clone())
    }

    fn session_view(&self, call_id: &RString) -> Option<SessionView> {
        let s = self.calls.get(call_id)?.session.as_deref()?;
        Some(s.view(call_id, self.sessions.focused.as_ref() == Some(call_id)))
    }

    fn has_session(&self, call_id: &RString) -> bool {
        self.calls.get(call_id).is_some_and(|e| e.session.is_some())
    }

    /// A new interaction: look it up and open its session.
    pub(super) fn open_session(&mut self, call_id: &RString) {
        let Some(entry) = self.calls.get(call_id) else {
            return;
        };
        if entry.consult_of.is_some() || entry.session.is_some() {
            return;
        }
        let view = entry.view.clone();
        let rule = self
            .lookups
            .iter()
            .find(|r| r.applies(&view.channel, view.direction, &view.dnis))
            .cloned();
        let rule = rule.filter(|_| self.directory.is_some());
        let (outcome, contact_found, candidates, cause) = match &rule {
            Some(rule) => {
                let value = match &rule.field {
                    LookupField::Ani => view.ani.to_string(),
                    LookupField::Dnis => view.dnis.to_string(),
                    LookupField::Data(key) => cti_plugin_api::lookup(&view.data, key)
                        .unwrap_or("")
                        .to_owned(),
                };
                let v = view.clone();
                let rule_name = rs(&rule.name);
                self.emit(EventKind::LOOKUP_REQUESTED, |e| {
                    e.call = ROption::RSome(v);
                    e.text = rule_name;
                });
                let found = match (&self.directory, value.is_empty()) {
                    (Some(dir), false) => search(dir, rule, &value),
                    _ => Ok(Vec::new()),
                };
                match found {
                    Err(e) => {
                        tracing::error!(
                            rule = rule.name,
                            "contact lookup failed: {}",
                            crate::privacy::text(&e)
                        );
                        (
                            LookupOutcome::NoContact,
                            None,
                            Vec::new(),
                            format!("lookup failed: {e}"),
                        )
                    }
                    Ok(mut list) => {
                        let n = list.len();
                        let outcome = match n {
                            0 => rule.on_none,
                            1 => rule.on_one,
                            _ => rule.on_many,
                        };
                        let (one, many) = match (outcome, n) {
                            (LookupOutcome::Contact | LookupOutcome::First, 1..) => {
                                (Some(list.remove(0)), Vec::new())
                            }
                            (LookupOutcome::PickList, _) => {
                                list.truncate(CANDIDATES);
                                (None, list)
                            }
                            _ => (None, Vec::new()),
                        };
                        let what = match n {
                            0 => "no match".to_owned(),
                            1 => "1 match".to_owned(),
                            n if n > CANDIDATES => format!("more than {CANDIDATES} matches"),
                            n => format!("{n} matches"),
                        };
                        (outcome, one, many, what)
                    }
                }
            }
            None => (
                LookupOutcome::NoContact,
                None,
                Vec::new(),
                "no lookup rule".to_owned(),
            ),
        };
        self.sessions.next += 1;
        let kept = Session {
            seq: self.sessions.next,
            outcome,
            contact: contact_found.map(|c| Box::new(contact(c))),
            candidates: candidates.into_iter().map(contact).collect(),
            transcript: RVec::new(),
        };
        let session = kept.view(call_id, false);
        if let Some(e) = self.calls.get_mut(call_id) {
            e.session = Some(Box::new(kept));
        }
        if rule.is_some() {
            let v = view.clone();
            let s = session.clone();
            self.emit(EventKind::LOOKUP_RESOLVED, |e| {
                e.call = ROption::RSome(v);
                e.session = ROption::RSome(s);
                e.cause = rs(outcome.name());
                e.text = RString::from(cause.as_str());
            });
        }
        self.emit(EventKind::SESSION_OPENED, |e| {
            e.call = ROption::RSome(view);
            e.session = ROption::RSome(session);
        });
        if self.sessions.focused.is_none() {
            self.focus_session(call_id, "first session");
        }
    }

    /// Gives a session the focus.
    pub(super) fn focus_session(&mut self, call_id: &RString, cause: &str) {
        if self.sessions.focused.as_ref() == Some(call_id) || !self.has_session(call_id) {
            return;
        }
        self.sessions.focused = Some(call_id.clone());
        let Some(session) = self.session_view(call_id) else {
            return;
        };
        let view = self.calls.get(call_id).map(|e| e.view.clone());
        self.emit(EventKind::SESSION_FOCUSED, |e| {
            e.call = view.into();
            e.session = ROption::RSome(session);
            e.cause = rs(cause);
        });
    }

    /// The interaction's work is over: its session closes.
    pub(super) fn close_session(&mut self, call_id: &RString) {
        let Some(entry) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(kept) = entry.session.take() else {
            return;
        };
        let view = entry.view.clone();
        let session = kept.view(call_id, false);
        let was_focused = self.sessions.focused.as_ref() == Some(call_id);
        let view = Some(view);
        self.emit(EventKind::SESSION_CLOSED, |e| {
            e.call = view.into();
            e.session = ROption::RSome(session);
        });
        if was_focused {
            self.sessions.focused = None;
            // The newest remaining session takes the focus.
            if let Some(next) = self.newest_session() {
                self.focus_session(&next, "previous session closed");
            }
        }
    }

    /// A chat event's line for the interaction's transcript (the SDK's
    /// rule, which controls that keep a copy of the desktop apply too).
    pub(super) fn add_transcript(&mut self, call_id: &RString, ev: &ConnectorEvent) {
        if let Some(s) = self.calls.get_mut(call_id).and_then(|e| e.session.as_mut()) {
            chat::append_transcript(&mut s.transcript, ev.kind, &ev.party, &ev.text);
        }
    }

    /// `FocusSession` and `PickContact`.
    pub(super) fn session_command(&mut self, command: &Command) -> CommandResult {
        let Some(id) = self.find_call(command) else {
            return Err(PluginError::new(
                ErrorKind::UNKNOWN_CALL,
                format!("no call \"{}\"", command.call_id),
            ));
        };
        if !self.has_session(&id) {
            return Err(PluginError::new(
                ErrorKind::INVALID_STATE,
                format!("call \"{id}\" has no session"),
            ));
        }
        match command.kind {
            CommandKind::FOCUS_SESSION => {
                self.focus_session(&id, "agent");
                Ok(Outcome::default())
            }
            CommandKind::PICK_CONTACT => {
                let Some(s) = self.calls.get_mut(&id).and_then(|e| e.session.as_mut()) else {
                    return Err(PluginError::new(ErrorKind::INVALID_STATE, "no session"));
                };
                let Some(pos) = s.candidates.iter().position(|c| c.id == command.target) else {
                    return Err(PluginError::new(
                        ErrorKind::BAD_ARGUMENT,
                        format!(
                            "contact \"{}\" is not in the pick list of call \"{id}\"",
                            command.target
                        ),
                    ));
                };
                let picked = s.candidates.remove(pos);
                s.candidates = Vec::new();
                s.contact = Some(Box::new(picked));
                s.outcome = LookupOutcome::Contact;
                let session = self.session_view(&id);
                let view = self.calls.get(&id).map(|e| e.view.clone());
                self.emit(EventKind::LOOKUP_RESOLVED, |e| {
                    e.call = view.into();
                    e.session = session.into();
                    e.cause = rs("contact");
                    e.text = rs("picked by the agent");
                });
                Ok(Outcome::default())
            }
            other => Err(PluginError::new(
                ErrorKind::UNSUPPORTED,
                format!("{other} is not a session command"),
            )),
        }
    }
}
