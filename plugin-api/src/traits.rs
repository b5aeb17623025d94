//! The `#[sabi_trait]` traits that cross the boundary.
//!
//! Their vtables are prefix types: methods are only ever added after the one
//! marked `last_prefix_field`, each with a default body, so a plugin built
//! against an older 1.x keeps loading (the host then gets the default).
//! Plugin authors do not implement these directly; they implement the plain
//! traits in [`sdk`](crate::sdk) and call [`export_plugin!`](crate::export_plugin).

use abi_stable::{
    sabi_trait,
    std_types::{RArc, RBox, RResult, RStr, RVec},
};

use crate::ffi::{
    CallInfo, Capabilities, Command, ConnectorEvent, DesktopEvent, DesktopSnapshot, HostedInfo,
    InterceptRequest, LogLevel, Outcome, PluginError, Verdict,
};

/// What the host offers every plugin instance. Cheap to clone, `Send + Sync`:
/// a plugin may hand it to its own threads.
#[sabi_trait]
pub trait HostApi: Send + Sync + Clone {
    /// Raises a connector event (the instance-based model). Blocks briefly
    /// when the desktop is busy (back-pressure); fails once the host stops.
    fn emit(&self, event: ConnectorEvent) -> RResult<(), PluginError>;

    /// Submits a command from a control. Returns a request id at once; the
    /// outcome arrives later as a `CommandCompleted` or `CommandFailed`
    /// event carrying that id.
    fn submit(&self, command: Command) -> RResult<u64, PluginError>;

    /// Logs through the host's `tracing` subscriber, tagged with the hosted
    /// control's name.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// The hosted control's entry in the manifest: name, channel, connection
    /// model and poll interval.
    #[sabi(last_prefix_field)]
    fn hosted(&self) -> HostedInfo;
}

/// The host's handle type for [`HostApi`].
pub type HostHandle = HostApi_TO<'static, RArc<()>>;

/// A connector: speaks a communications system's protocol.
#[sabi_trait]
pub trait ConnectorApi: Send {
    /// Starts the connector. `calls` are the live calls the desktop knows
    /// this hosted control owned (empty on a first start; set after a
    /// restart or a reload, so the connector can resynchronise).
    fn start(&mut self, calls: RVec<CallInfo>) -> RResult<(), PluginError>;

    /// Polling model: returns the events that happened since the last poll.
    /// Instance-based connectors return nothing here and emit through the host.
    fn poll(&mut self) -> RResult<RVec<ConnectorEvent>, PluginError>;

    /// Carries out a command.
    fn execute(&mut self, command: &Command) -> RResult<Outcome, PluginError>;

    /// The commands this instance supports.
    fn capabilities(&self) -> Capabilities;

    /// The live calls on the connector's system, for resynchronisation.
    fn calls(&self) -> RVec<CallInfo>;

    /// Stops the connector and its threads.
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), PluginError>;
}

/// The host's handle type for [`ConnectorApi`].
pub type ConnectorBox = ConnectorApi_TO<'static, RBox<()>>;

/// A control: what the agent touches (toolbar, web desktop, recorder…).
#[sabi_trait]
pub trait ControlApi: Send {
    /// Starts the control with the whole desktop.
    fn start(&mut self, snapshot: &DesktopSnapshot) -> RResult<(), PluginError>;

    /// One desktop event, in order.
    fn on_event(&mut self, event: &DesktopEvent) -> RResult<(), PluginError>;

    /// The control fell behind and missed events: redraw from this snapshot.
    fn resync(&mut self, snapshot: &DesktopSnapshot) -> RResult<(), PluginError>;

    /// Stops the control and its threads.
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), PluginError>;

    /// A command this control intercepts (manifest `[[hosted_control.intercept]]`).
    /// Added in cti-plugin-api 1.1: a control built against 1.0 gets this
    /// default, which lets every command go on.
    fn intercept(&mut self, request: &InterceptRequest) -> RResult<Verdict, PluginError> {
        let _ = request;
        RResult::ROk(Verdict::proceed())
    }
}

/// The host's handle type for [`ControlApi`].
pub type ControlBox = ControlApi_TO<'static, RBox<()>>;
