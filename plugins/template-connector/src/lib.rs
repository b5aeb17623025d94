//! The smallest complete CTI Host connector, for vendors to copy: a loopback phone
//! (instance model) whose one call, `tpl-1`, rings at start and takes Answer and Hangup.
use cti_plugin_api::sdk::prelude::*;

pub struct TemplateConnector {
    host: Host,
    call: CallInfo, // the one call; `call.state` is the agent's connection state
}

impl NewConnector for TemplateConnector {
    fn new(host: Host, _settings: Settings) -> Result<Self, PluginError> {
        let call = CallInfo {
            call_id: "tpl-1".into(),
            direction: Direction::Inbound,
            ani: "+15551230000".into(),
            dnis: "1001".into(),
            state: ConnectionState::Null,
            data: RVec::new(),
        };
        Ok(Self { host, call })
    }
}

impl TemplateConnector {
    fn emit(&self, kind: EventKind, party: &str, cause: &str) -> Result<Outcome, PluginError> {
        let mut ev = ConnectorEvent::new(kind, self.call.call_id.clone(), self.call.state);
        (ev.party, ev.cause) = (party.into(), cause.into());
        ev.call = ROption::from((kind == EventKind::DELIVERED).then(|| self.call.clone()));
        self.host.emit(ev).map(|()| Outcome::default())
    }
}

impl Connector for TemplateConnector {
    const CAPABILITIES: Capabilities =
        Capabilities(1 << CommandKind::ANSWER.0 | 1 << CommandKind::HANGUP.0);

    fn start(&mut self, _calls: Vec<CallInfo>) -> Result<(), PluginError> {
        let link_up = ConnectorEvent::new(EventKind::LINK_UP, "", ConnectionState::Null);
        self.host.emit(link_up)?;
        self.call.state = ConnectionState::Alerting;
        self.emit(EventKind::DELIVERED, &self.call.ani, "")?;
        Ok(())
    }

    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
        let known = command.call_id == self.call.call_id && self.call.state.is_live();
        match (command.kind, self.call.state) {
            (kind, _) if !Self::CAPABILITIES.contains(kind) => Err(unsupported(command)),
            _ if !known => Err(PluginError::new(ErrorKind::UNKNOWN_CALL, "no such call")),
            (CommandKind::ANSWER, ConnectionState::Alerting) => {
                self.call.state = ConnectionState::Connected;
                self.emit(EventKind::ESTABLISHED, &self.call.ani, "")
            }
            (CommandKind::HANGUP, _) => {
                self.call.state = ConnectionState::Null;
                self.emit(EventKind::CONNECTION_CLEARED, "1001", "NormalClearing")?;
                self.emit(EventKind::CALL_CLEARED, "", "")
            }
            _ => Err(PluginError::new(ErrorKind::INVALID_STATE, "not ringing")),
        }
    }

    fn calls(&self) -> Vec<CallInfo> {
        Vec::from_iter(self.call.state.is_live().then(|| self.call.clone()))
    }
}

cti_plugin_api::export_plugin!(connector = TemplateConnector);
