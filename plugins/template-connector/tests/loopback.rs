//! Drives the template connector through a fake host, as CTI Host would.

use std::sync::{Arc, Mutex};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr},
};
use cti_plugin_api::{sdk::prelude::*, HostApi, HostApi_TO};
use template_connector::TemplateConnector;

#[derive(Clone, Default)]
struct FakeHost(Arc<Mutex<Vec<ConnectorEvent>>>);

impl FakeHost {
    fn take(&self) -> Vec<(EventKind, ConnectionState)> {
        let mut events = self.0.lock().unwrap_or_else(|e| e.into_inner());
        events.drain(..).map(|e| (e.kind, e.state)).collect()
    }
}

impl HostApi for FakeHost {
    fn emit(&self, event: ConnectorEvent) -> RResult<(), PluginError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
        RResult::ROk(())
    }
    fn submit(&self, _command: Command) -> RResult<u64, PluginError> {
        RResult::RErr(PluginError::new(ErrorKind::UNSUPPORTED, "no submit"))
    }
    fn log(&self, _level: LogLevel, _message: RStr<'_>) {}
    fn hosted(&self) -> HostedInfo {
        HostedInfo {
            name: "template".into(),
            channel: "voice".into(),
            connection: ConnectionModel::Instance,
            poll_interval_ms: 0,
            agent_id: "agent".into(),
        }
    }
}

#[test]
fn rings_answers_and_hangs_up() -> Result<(), PluginError> {
    use ConnectionState::{Alerting, Connected, Null};
    let fake = FakeHost::default();
    let host = Host::from_handle(HostApi_TO::from_ptr(RArc::new(fake.clone()), TD_Opaque));
    let mut conn = TemplateConnector::new(host, Settings::from_toml(""))?;
    let cmd = |kind| Command::new(kind, "tpl-1");

    conn.start(Vec::new())?;
    assert_eq!(
        fake.take(),
        [(EventKind::LINK_UP, Null), (EventKind::DELIVERED, Alerting)]
    );
    assert_eq!(conn.calls().len(), 1);

    let err = |r: Result<Outcome, PluginError>| r.err().map(|e| e.kind);
    assert_eq!(
        err(conn.execute(&cmd(CommandKind::HOLD))),
        Some(ErrorKind::UNSUPPORTED)
    );
    assert_eq!(
        err(conn.execute(&Command::new(CommandKind::ANSWER, "other"))),
        Some(ErrorKind::UNKNOWN_CALL)
    );

    conn.execute(&cmd(CommandKind::ANSWER))?;
    assert_eq!(fake.take(), [(EventKind::ESTABLISHED, Connected)]);
    assert_eq!(
        err(conn.execute(&cmd(CommandKind::ANSWER))),
        Some(ErrorKind::INVALID_STATE)
    );

    conn.execute(&cmd(CommandKind::HANGUP))?;
    assert_eq!(
        fake.take(),
        [
            (EventKind::CONNECTION_CLEARED, Null),
            (EventKind::CALL_CLEARED, Null)
        ]
    );
    assert!(conn.calls().is_empty());
    assert_eq!(
        err(conn.execute(&cmd(CommandKind::HANGUP))),
        Some(ErrorKind::UNKNOWN_CALL)
    );
    conn.stop()
}
