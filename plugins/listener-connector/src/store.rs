//! The interactions the listener holds, and what a request or an agent
//! command does to them. No I/O here.

use std::collections::BTreeMap;

use cti_plugin_api::sdk::prelude::*;
use serde_json::{json, Map, Value};

/// Limits on what callers may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Interactions held at once.
    pub max_interactions: usize,
    /// Call-data entries per interaction.
    pub max_data: usize,
    /// Longest key (bytes).
    pub max_key: usize,
    /// Longest value, ANI or DNIS (bytes).
    pub max_value: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_interactions: 1000,
            max_data: 64,
            max_key: 64,
            max_value: 2048,
        }
    }
}

/// A refused request: HTTP status and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// One line for the caller.
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// What a POST or PATCH carries, from JSON or form fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    /// Caller's own id for the interaction (POST only).
    pub id: Option<String>,
    /// Calling number or address.
    pub ani: Option<String>,
    /// Called number or address.
    pub dnis: Option<String>,
    /// `type`/`channel` as the caller names it (kept as call data `type`).
    pub kind: Option<String>,
    /// Call data, in order.
    pub data: Vec<(String, String)>,
}

fn scalar(key: &str, v: &Value) -> Result<String, Refusal> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(refuse(
            400,
            format!("\"{key}\" must be a string, number or boolean"),
        )),
    }
}

impl Fields {
    /// Reads a JSON object: `id`, `ani`, `dnis`, `type` or `channel`, and
    /// `data` (an object of scalars).
    ///
    /// # Errors
    /// 400 naming what is wrong.
    pub fn from_json(body: &[u8]) -> Result<Self, Refusal> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| refuse(400, format!("the body is not JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(refuse(400, "the body must be a JSON object"));
        };
        let mut f = Fields::default();
        for (k, v) in obj {
            match k.as_str() {
                "id" => f.id = Some(scalar(&k, &v)?),
                "ani" => f.ani = Some(scalar(&k, &v)?),
                "dnis" => f.dnis = Some(scalar(&k, &v)?),
                "type" | "channel" => f.kind = Some(scalar(&k, &v)?),
                "data" => {
                    let Value::Object(map) = v else {
                        return Err(refuse(400, "\"data\" must be an object of key: value"));
                    };
                    for (dk, dv) in map {
                        let value = scalar(&format!("data.{dk}"), &dv)?;
                        f.data.push((dk, value));
                    }
                }
                other => {
                    return Err(refuse(
                        400,
                        format!("unknown field \"{other}\" (ani, dnis, type, data, id)"),
                    ))
                }
            }
        }
        Ok(f)
    }

    /// Reads form fields: `id`, `ani`, `dnis`, `type`/`channel`; every other
    /// field is call data.
    ///
    /// # Errors
    /// 400 for a malformed body.
    pub fn from_form(body: &[u8]) -> Result<Self, Refusal> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| refuse(400, format!("malformed form body: {e}")))?;
        let mut f = Fields::default();
        for (k, v) in pairs {
            match k.as_str() {
                "id" => f.id = Some(v),
                "ani" => f.ani = Some(v),
                "dnis" => f.dnis = Some(v),
                "type" | "channel" => f.kind = Some(v),
                _ => f.data.push((k, v)),
            }
        }
        Ok(f)
    }
}

/// One interaction.
#[derive(Debug, Clone)]
struct Entry {
    info: CallInfo,
}

/// Events to raise, in order.
pub type Events = Vec<ConnectorEvent>;

/// The interactions.
#[derive(Debug, Default)]
pub struct Store {
    entries: BTreeMap<String, Entry>,
    next: u64,
    limits: Limits,
    /// The agent's own party name in events.
    agent: String,
}

fn ev(kind: EventKind, id: &str, state: ConnectionState) -> ConnectorEvent {
    ConnectorEvent::new(kind, id, state)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl Store {
    /// An empty store.
    pub fn new(limits: Limits, agent: &str) -> Self {
        Self {
            entries: BTreeMap::new(),
            next: 0,
            limits,
            agent: agent.to_owned(),
        }
    }

    /// Takes over the live interactions the desktop knew before a restart.
    pub fn adopt(&mut self, calls: &[CallInfo]) {
        for c in calls {
            if let Some(n) = c
                .call_id
                .strip_prefix("lst-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                self.next = self.next.max(n);
            }
            self.entries
                .insert(c.call_id.to_string(), Entry { info: c.clone() });
        }
    }

    /// The live interactions.
    pub fn calls(&self) -> Vec<CallInfo> {
        self.entries.values().map(|e| e.info.clone()).collect()
    }

    fn check_data(&self, data: &[(String, String)], existing: usize) -> Result<(), Refusal> {
        let l = self.limits;
        if data.len() + existing > l.max_data {
            return Err(refuse(
                400,
                format!("too much call data (at most {} entries)", l.max_data),
            ));
        }
        for (k, v) in data {
            if k.is_empty() || k.len() > l.max_key {
                return Err(refuse(
                    400,
                    format!("call-data key \"{k}\" must have 1 to {} bytes", l.max_key),
                ));
            }
            if v.len() > l.max_value {
                return Err(refuse(
                    400,
                    format!("call-data value of \"{k}\" is over {} bytes", l.max_value),
                ));
            }
        }
        Ok(())
    }

    /// POST: a new interaction, offered to the agent. Nothing is kept when
    /// it is refused.
    ///
    /// # Errors
    /// 400 (missing ANI, bad id, limits), 409 (id in use), 503 (full).
    pub fn create(&mut self, f: Fields) -> Result<(String, Events), Refusal> {
        let ani = f.ani.unwrap_or_default();
        if ani.trim().is_empty() {
            return Err(refuse(
                400,
                "\"ani\" is required (the caller's number or address)",
            ));
        }
        let dnis = f.dnis.unwrap_or_default();
        for (name, v) in [("ani", &ani), ("dnis", &dnis)] {
            if v.len() > self.limits.max_value {
                return Err(refuse(400, format!("\"{name}\" is too long")));
            }
        }
        let mut data = Vec::new();
        if let Some(kind) = f.kind.filter(|k| !k.is_empty()) {
            data.push(("type".to_owned(), kind));
        }
        data.extend(f.data);
        self.check_data(&data, 0)?;
        let id = match f.id {
            Some(id) => {
                if !valid_id(&id) {
                    return Err(refuse(
                        400,
                        "\"id\" must be 1-64 characters of letters, digits, - _ . :",
                    ));
                }
                if self.entries.contains_key(&id) {
                    return Err(refuse(409, format!("interaction \"{id}\" already exists")));
                }
                id
            }
            None => loop {
                self.next += 1;
                let id = format!("lst-{}", self.next);
                if !self.entries.contains_key(&id) {
                    break id;
                }
            },
        };
        if self.entries.len() >= self.limits.max_interactions {
            return Err(refuse(
                503,
                format!(
                    "{} interactions are open already; clear some first",
                    self.entries.len()
                ),
            ));
        }
        let mut info = CallInfo::new(
            id.as_str(),
            Direction::Inbound,
            ani.as_str(),
            dnis.as_str(),
            ConnectionState::Alerting,
        );
        info.data = data.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
        let delivered = ev(EventKind::DELIVERED, &id, ConnectionState::Alerting)
            .with_party(ani.as_str())
            .with_call(info.clone());
        self.entries.insert(id.clone(), Entry { info });
        Ok((id, vec![delivered]))
    }

    /// Undoes a create whose event could not be raised.
    pub fn forget(&mut self, id: &str) {
        self.entries.remove(id);
    }

    /// PATCH: merges call data (and a new DNIS/type) into an interaction.
    ///
    /// # Errors
    /// 404, 400.
    pub fn update(&mut self, id: &str, f: Fields) -> Result<Events, Refusal> {
        let existing = self
            .entries
            .get(id)
            .ok_or_else(|| refuse(404, format!("no interaction \"{id}\"")))?;
        if f.id.is_some() || f.ani.is_some() {
            return Err(refuse(400, "\"id\" and \"ani\" cannot change"));
        }
        let mut data = Vec::new();
        if let Some(kind) = f.kind {
            data.push(("type".to_owned(), kind));
        }
        data.extend(f.data);
        if data.is_empty() && f.dnis.is_none() {
            return Err(refuse(400, "nothing to update (data, type or dnis)"));
        }
        let new_keys = data
            .iter()
            .filter(|(k, _)| !existing.info.data.iter().any(|kv| kv.key == k.as_str()))
            .count();
        self.check_data(&data[..0], existing.info.data.len() + new_keys)?;
        self.check_data(&data, 0)?;
        if let Some(d) = &f.dnis {
            if d.len() > self.limits.max_value {
                return Err(refuse(400, "\"dnis\" is too long"));
            }
        }
        let entry = self.entries.get_mut(id).expect("checked above");
        if let Some(d) = f.dnis {
            entry.info.dnis = d.into();
        }
        for (k, v) in &data {
            match entry.info.data.iter_mut().find(|kv| kv.key == k.as_str()) {
                Some(kv) => kv.value = v.as_str().into(),
                None => entry.info.data.push(KeyValue::new(k.as_str(), v.as_str())),
            }
        }
        // CallUpdated: the desktop merges the changed data (and the DNIS)
        // into the call and leaves its state alone.
        let mut changed = entry.info.clone();
        changed.data = data.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
        let mut e = ev(EventKind::CALL_UPDATED, id, entry.info.state).with_call(changed);
        e.attrs.push(KeyValue::new("update", "data"));
        e.cause = "DataUpdated".into();
        Ok(vec![e])
    }

    /// DELETE: the source system ends the interaction.
    ///
    /// # Errors
    /// 404.
    pub fn clear(&mut self, id: &str) -> Result<Events, Refusal> {
        let e = self
            .entries
            .remove(id)
            .ok_or_else(|| refuse(404, format!("no interaction \"{id}\"")))?;
        Ok(vec![
            ev(EventKind::CONNECTION_CLEARED, id, ConnectionState::Null)
                .with_party(e.info.ani.as_str())
                .with_cause("ClearedBySource"),
            ev(EventKind::CALL_CLEARED, id, ConnectionState::Null).with_cause("ClearedBySource"),
        ])
    }

    /// An agent command: Answer, Reject, Hangup.
    ///
    /// # Errors
    /// `UnknownCall`, `InvalidState`, `Unsupported`.
    pub fn execute(&mut self, command: &Command) -> Result<Events, PluginError> {
        let id = command.call_id.as_str();
        let Some(entry) = self.entries.get_mut(id) else {
            return Err(PluginError::new(
                ErrorKind::UNKNOWN_CALL,
                format!("no interaction \"{id}\""),
            ));
        };
        let state = entry.info.state;
        let wrong = |verb: &str| {
            PluginError::new(
                ErrorKind::INVALID_STATE,
                format!("cannot {verb} interaction \"{id}\" while it is {state}"),
            )
        };
        let agent = self.agent.clone();
        let cleared = |cause: &str| {
            vec![
                ev(EventKind::CONNECTION_CLEARED, id, ConnectionState::Null)
                    .with_party(agent.as_str())
                    .with_cause(cause),
                ev(EventKind::CALL_CLEARED, id, ConnectionState::Null).with_cause(cause),
            ]
        };
        match command.kind {
            CommandKind::ANSWER => {
                if state != ConnectionState::Alerting {
                    return Err(wrong("answer"));
                }
                entry.info.state = ConnectionState::Connected;
                let ani = entry.info.ani.clone();
                Ok(vec![ev(
                    EventKind::ESTABLISHED,
                    id,
                    ConnectionState::Connected,
                )
                .with_party(ani)])
            }
            CommandKind::REJECT => {
                if state != ConnectionState::Alerting {
                    return Err(wrong("reject"));
                }
                self.entries.remove(id);
                Ok(cleared("Rejected"))
            }
            CommandKind::HANGUP => {
                self.entries.remove(id);
                Ok(cleared("Hangup"))
            }
            other => Err(PluginError::new(
                ErrorKind::UNSUPPORTED,
                format!("{other} is not supported by the listener"),
            )),
        }
    }

    /// The JSON of one interaction.
    pub fn json(&self, id: &str) -> Option<Value> {
        self.entries.get(id).map(|e| info_json(&e.info))
    }

    /// The JSON of every interaction.
    pub fn list_json(&self) -> Value {
        Value::Array(self.entries.values().map(|e| info_json(&e.info)).collect())
    }
}

/// `{id, ani, dnis, state, data}`.
pub fn info_json(info: &CallInfo) -> Value {
    let mut data = Map::new();
    for kv in info.data.iter() {
        data.insert(kv.key.to_string(), Value::String(kv.value.to_string()));
    }
    json!({
        "id": info.call_id.as_str(),
        "ani": info.ani.as_str(),
        "dnis": info.dnis.as_str(),
        "state": info.state.name(),
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Limits::default(), "agent-1")
    }

    fn post(s: &mut Store, body: &str) -> Result<(String, Events), Refusal> {
        s.create(Fields::from_json(body.as_bytes())?)
    }

    #[test]
    fn create_update_clear() {
        let mut s = store();
        let (id, evs) = post(
            &mut s,
            r#"{"ani":"+15551234","dnis":"800","type":"ivr","data":{"account":"42","vip":true,"score":7}}"#,
        )
        .unwrap();
        assert_eq!(id, "lst-1");
        assert_eq!(evs[0].kind, EventKind::DELIVERED);
        let ROption::RSome(info) = &evs[0].call else {
            panic!()
        };
        assert_eq!(info.ani.as_str(), "+15551234");
        assert_eq!(lookup(&info.data, "type"), Some("ivr"));
        assert_eq!(lookup(&info.data, "vip"), Some("true"));
        assert_eq!(lookup(&info.data, "score"), Some("7"));
        let evs = s
            .update(
                &id,
                Fields::from_json(br#"{"data":{"account":"43","lang":"fr"}}"#).unwrap(),
            )
            .unwrap();
        let ROption::RSome(changed) = &evs[0].call else {
            panic!()
        };
        assert_eq!(evs[0].kind, EventKind::CALL_UPDATED);
        assert_eq!(changed.data.len(), 2);
        assert_eq!(evs[0].state, ConnectionState::Alerting);
        assert_eq!(s.json(&id).unwrap()["data"]["account"], "43");
        let evs = s.clear(&id).unwrap();
        assert_eq!(evs[0].kind, EventKind::CONNECTION_CLEARED);
        assert_eq!(evs[1].kind, EventKind::CALL_CLEARED);
        assert!(s.calls().is_empty());
        assert_eq!(s.clear(&id).unwrap_err().status, 404);
    }

    #[test]
    fn form_fields_are_call_data() {
        let f = Fields::from_form(b"ani=5551234&type=crm&account=42&note=hello+world").unwrap();
        assert_eq!(f.ani.as_deref(), Some("5551234"));
        assert_eq!(f.kind.as_deref(), Some("crm"));
        assert_eq!(
            f.data,
            vec![
                ("account".to_owned(), "42".to_owned()),
                ("note".to_owned(), "hello world".to_owned())
            ]
        );
    }

    #[test]
    fn refusals_create_nothing() {
        let mut s = store();
        for (body, status, want) in [
            ("not json", 400, "not JSON"),
            ("[1]", 400, "JSON object"),
            (r#"{"dnis":"1"}"#, 400, "\"ani\" is required"),
            (
                r#"{"ani":"1","data":[1]}"#,
                400,
                "\"data\" must be an object",
            ),
            (r#"{"ani":"1","data":{"a":{"b":1}}}"#, 400, "data.a"),
            (
                r#"{"ani":"1","colour":"red"}"#,
                400,
                "unknown field \"colour\"",
            ),
            (r#"{"ani":"1","id":"bad id!"}"#, 400, "\"id\" must be"),
        ] {
            let r = post(&mut s, body).unwrap_err();
            assert_eq!(r.status, status, "{body}");
            assert!(r.reason.contains(want), "{body}: {}", r.reason);
        }
        assert!(s.calls().is_empty());
        post(&mut s, r#"{"ani":"1","id":"ivr-7"}"#).unwrap();
        assert_eq!(
            post(&mut s, r#"{"ani":"1","id":"ivr-7"}"#)
                .unwrap_err()
                .status,
            409
        );
        let big: String = (0..70).map(|i| format!("\"k{i}\":\"v\",")).collect();
        let body = format!(
            "{{\"ani\":\"1\",\"data\":{{{}}}}}",
            big.trim_end_matches(',')
        );
        assert_eq!(post(&mut s, &body).unwrap_err().status, 400);
        assert_eq!(s.calls().len(), 1);
        assert_eq!(s.update("nope", Fields::default()).unwrap_err().status, 404);
        assert_eq!(
            s.update("ivr-7", Fields::from_json(br#"{"ani":"2"}"#).unwrap())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn agent_commands() {
        let mut s = store();
        let (id, _) = post(&mut s, r#"{"ani":"1"}"#).unwrap();
        let c = |k| Command::new(k, id.as_str());
        assert_eq!(
            s.execute(&c(CommandKind::HOLD)).unwrap_err().kind,
            ErrorKind::UNSUPPORTED
        );
        let e = s.execute(&c(CommandKind::ANSWER)).unwrap();
        assert_eq!(e[0].kind, EventKind::ESTABLISHED);
        assert_eq!(
            s.execute(&c(CommandKind::REJECT)).unwrap_err().kind,
            ErrorKind::INVALID_STATE
        );
        let e = s.execute(&c(CommandKind::HANGUP)).unwrap();
        assert_eq!(e[0].party.as_str(), "agent-1");
        assert_eq!(
            s.execute(&c(CommandKind::HANGUP)).unwrap_err().kind,
            ErrorKind::UNKNOWN_CALL
        );
    }

    #[test]
    fn capacity_limit() {
        let mut s = Store::new(
            Limits {
                max_interactions: 1,
                ..Limits::default()
            },
            "a",
        );
        post(&mut s, r#"{"ani":"1"}"#).unwrap();
        assert_eq!(post(&mut s, r#"{"ani":"2"}"#).unwrap_err().status, 503);
    }
}
