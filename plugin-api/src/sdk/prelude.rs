//! Everything a plugin author usually needs: `use cti_plugin_api::sdk::prelude::*;`.

pub use crate::ffi::{
    lookup, AgentState, AgentView, CallInfo, CallView, Capabilities, Command, CommandKind,
    ConnectionModel, ConnectionState, ConnectorEvent, DesktopEvent, DesktopSnapshot, Direction,
    ErrorKind, EventKind, HostedInfo, InterceptPhase, InterceptRequest, KeyValue, LogLevel,
    Outcome, PluginError, Verdict, VerdictKind, WorkItemView, WorkState,
};
pub use crate::sdk::{unsupported, Connector, Control, Host, NewConnector, NewControl, Settings};
pub use abi_stable::std_types::{RArc, ROption, RString, RVec};
