//! The SDK for plugin authors: plain traits, a host handle and
//! [`export_plugin!`](crate::export_plugin).
//!
//! Implement [`Connector`] (or [`Control`]), give it a constructor through
//! [`NewConnector`] (or [`NewControl`]), and export it:
//!
//! ```no_run
//! use cti_plugin_api::sdk::prelude::*;
//!
//! struct Echo;
//!
//! impl NewConnector for Echo {
//!     fn new(_host: Host, _settings: Settings) -> Result<Self, PluginError> {
//!         Ok(Echo)
//!     }
//! }
//!
//! impl Connector for Echo {
//!     const CAPABILITIES: Capabilities = Capabilities::NONE;
//!     fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError> {
//!         Err(unsupported(command))
//!     }
//! }
//!
//! cti_plugin_api::export_plugin!(connector = Echo);
//! ```
//!
//! Every call from the host goes through `catch_unwind`: a panic comes back
//! to the host as a [`PluginError`] of kind `Panic` and never unwinds across
//! the boundary (abi_stable would abort the whole process).

use std::{
    any::Any,
    panic::{catch_unwind, AssertUnwindSafe},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use serde::de::DeserializeOwned;

use crate::{
    ffi::{
        CallInfo, Capabilities, Command, ConnectorEvent, DesktopEvent, DesktopSnapshot, ErrorKind,
        HostedInfo, InterceptRequest, LogLevel, Outcome, PluginError, Verdict,
    },
    traits::{
        ConnectorApi, ConnectorApi_TO, ConnectorBox, ControlApi, ControlApi_TO, ControlBox,
        HostHandle,
    },
};

pub mod chat;
pub mod json;
pub mod prelude;
pub mod privacy;

/// The host, as a plugin sees it. Cheap to clone and `Send + Sync`.
#[derive(Clone)]
pub struct Host {
    inner: HostHandle,
}

impl Host {
    #[doc(hidden)]
    pub fn from_handle(inner: HostHandle) -> Self {
        Self { inner }
    }

    /// Raises a connector event (instance-based model).
    ///
    /// # Errors
    /// Fails once the host is shutting down.
    pub fn emit(&self, event: ConnectorEvent) -> Result<(), PluginError> {
        self.inner.emit(event).into_result()
    }

    /// Submits a command (controls). The outcome arrives as a
    /// `CommandCompleted`/`CommandFailed` event with the returned id.
    ///
    /// # Errors
    /// Fails once the host is shutting down.
    pub fn submit(&self, command: Command) -> Result<u64, PluginError> {
        self.inner.submit(command).into_result()
    }

    /// Logs through the host, tagged with this hosted control's name.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.inner.log(level, RStr::from(message));
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// The hosted control's name in the manifest.
    pub fn instance_name(&self) -> String {
        self.inner.hosted().name.into_string()
    }

    /// The hosted control's manifest entry (channel, connection model…).
    pub fn hosted(&self) -> HostedInfo {
        self.inner.hosted()
    }
}

/// Compares two secrets (tokens, passwords) in time that depends only on
/// their lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The reserved settings key of the **test mode**: `cti-host verify` merges
/// `cti_test_mode = true` into the settings it builds a connector with.
///
/// [`Settings::parse`] removes the key before deserialising, so a plugin's
/// `deny_unknown_fields` settings type never sees it; a connector reads it
/// with [`Settings::test_mode`]. A connector that supports the test mode
/// promises, while it is on:
/// - soon after `start` (within 2 s) it offers an inbound call (`Delivered`
///   carrying `call`, state `Alerting`) without a real caller; one that
///   declares `Reject` offers a second once the first is no longer ringing
///   (so `Answer` and `Reject` can both be exercised); no more after that;
/// - the far end never hangs up or abandons by itself;
/// - an outbound call (`MakeCall`) is answered (`Established`) within 2 s,
///   and a transfer or consultation target accepts at once;
/// - it needs no real phone system when it can avoid one (a connector that
///   cannot is verified against the lab system its other settings name).
///
/// A connector without a test mode simply ignores the key; `verify` then
/// exercises what the connector offers by itself (the settings given with
/// `--settings`, such as the simulator's `first_call_after_ms = 0`).
pub const TEST_MODE_KEY: &str = "cti_test_mode";

/// The hosted control's `settings` table.
#[derive(Debug, Clone)]
pub struct Settings {
    text: String,
}

impl Settings {
    /// Wraps the TOML text of a settings table.
    pub fn from_toml(text: &str) -> Self {
        Self {
            text: text.to_owned(),
        }
    }

    /// The TOML text.
    pub fn as_toml(&self) -> &str {
        &self.text
    }

    /// Deserialises the settings into the plugin's own type (use
    /// `#[serde(default, deny_unknown_fields)]` there).
    ///
    /// # Errors
    /// A `BadSettings` error naming the key and the problem.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        toml::from_str(&self.without_reserved()).map_err(|e| {
            let msg = e.message().to_owned();
            PluginError::new(ErrorKind::BAD_SETTINGS, format!("settings: {msg}"))
        })
    }

    /// True when the host runs the connector in test mode (see
    /// [`TEST_MODE_KEY`]): `cti_test_mode = true` in the settings.
    pub fn test_mode(&self) -> bool {
        self.text.contains(TEST_MODE_KEY)
            && toml::from_str::<toml::Table>(&self.text)
                .is_ok_and(|t| t.get(TEST_MODE_KEY).and_then(toml::Value::as_bool) == Some(true))
    }

    /// The settings without the keys reserved for the host.
    fn without_reserved(&self) -> std::borrow::Cow<'_, str> {
        if !self.text.contains(TEST_MODE_KEY) {
            return std::borrow::Cow::Borrowed(&self.text);
        }
        let Ok(mut table) = toml::from_str::<toml::Table>(&self.text) else {
            return std::borrow::Cow::Borrowed(&self.text);
        };
        if table.remove(TEST_MODE_KEY).is_none() {
            return std::borrow::Cow::Borrowed(&self.text);
        }
        toml::to_string(&table).map_or(
            std::borrow::Cow::Borrowed(&self.text),
            std::borrow::Cow::Owned,
        )
    }
}

/// A connector: speaks a communications system's protocol. Every method but
/// [`capabilities`](Connector::capabilities) and
/// [`execute`](Connector::execute) has a default.
pub trait Connector: Send + 'static {
    /// Starts the connector; `calls` are the live calls it owned before a
    /// restart or reload (empty at first start).
    ///
    /// # Errors
    /// A failure here fails the start; the supervisor may retry.
    fn start(&mut self, calls: Vec<CallInfo>) -> Result<(), PluginError> {
        let _ = calls;
        Ok(())
    }

    /// Polling model: the events since the last poll.
    ///
    /// # Errors
    /// Counts as a plugin failure.
    fn poll(&mut self) -> Result<Vec<ConnectorEvent>, PluginError> {
        Ok(Vec::new())
    }

    /// Carries out a call-control command.
    ///
    /// # Errors
    /// `Unsupported` for commands it does not implement, or what the system said.
    fn execute(&mut self, command: &Command) -> Result<Outcome, PluginError>;

    /// The commands every instance supports (shown by `cti-host inspect`).
    const CAPABILITIES: Capabilities;

    /// The commands this instance supports; defaults to `CAPABILITIES`.
    fn capabilities(&self) -> Capabilities {
        Self::CAPABILITIES
    }

    /// The live calls on its system.
    fn calls(&self) -> Vec<CallInfo> {
        Vec::new()
    }

    /// Stops it and its threads.
    ///
    /// # Errors
    /// Reported and otherwise ignored.
    fn stop(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

/// How a connector is built.
pub trait NewConnector: Connector + Sized {
    /// Builds the connector from the host and its settings.
    ///
    /// # Errors
    /// `BadSettings` and friends: the host refuses to load the hosted control.
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError>;
}

/// A control: what the agent touches.
pub trait Control: Send + 'static {
    /// Starts it with the whole desktop.
    ///
    /// # Errors
    /// A failure here fails the start.
    fn start(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        let _ = snapshot;
        Ok(())
    }

    /// One desktop event, in order.
    ///
    /// # Errors
    /// Counts as a plugin failure.
    fn on_event(&mut self, event: &DesktopEvent) -> Result<(), PluginError>;

    /// It missed events; redraw from the snapshot. Defaults to `start`.
    ///
    /// # Errors
    /// Counts as a plugin failure.
    fn resync(&mut self, snapshot: &DesktopSnapshot) -> Result<(), PluginError> {
        self.start(snapshot)
    }

    /// Stops it and its threads.
    ///
    /// # Errors
    /// Reported and otherwise ignored.
    fn stop(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    /// A command this control intercepts (declared in the manifest with
    /// `[[hosted_control.intercept]]`): return `Verdict::proceed()`,
    /// `Verdict::veto(reason)`, or for the Replace phase
    /// `Verdict::handled(outcome)`. Since 1.1; defaults to proceed.
    ///
    /// # Errors
    /// An error vetoes a Before command and fails a Replace one.
    fn intercept(&mut self, request: &InterceptRequest) -> Result<Verdict, PluginError> {
        let _ = request;
        Ok(Verdict::proceed())
    }
}

/// How a control is built.
pub trait NewControl: Control + Sized {
    /// Builds the control from the host and its settings.
    ///
    /// # Errors
    /// `BadSettings` and friends: the host refuses to load the hosted control.
    fn new(host: Host, settings: Settings) -> Result<Self, PluginError>;
}

/// The error for a command a connector does not implement.
pub fn unsupported(command: &Command) -> PluginError {
    PluginError::new(
        ErrorKind::UNSUPPORTED,
        format!("{} is not supported", command.kind),
    )
}

/// The longest panic text (in characters) passed on to the host.
pub const MAX_PANIC_MESSAGE: usize = 200;

/// Turns a panic payload into the error returned to the host.
///
/// The message is `plugin panicked: ` followed by the plugin's own panic
/// text only: the SDK adds nothing of the command or the call (no number,
/// no call data). Phone-number-like runs in the plugin's text are masked
/// ([`privacy::redact_numbers`]) and the text is cut at
/// [`MAX_PANIC_MESSAGE`] characters, so a careless `expect(&format!(…))`
/// cannot leak a caller's number into the host's logs.
pub fn panic_error(payload: Box<dyn Any + Send>) -> PluginError {
    let msg = panic_text(payload.as_ref());
    PluginError::new(ErrorKind::PANIC, format!("plugin panicked: {msg}"))
}

/// The redacted, truncated text of a panic payload.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    let raw = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "panic with a non-string payload"
    };
    let line = raw.lines().next().unwrap_or("");
    privacy::truncate(&privacy::redact_numbers(line), MAX_PANIC_MESSAGE).into_owned()
}

/// Makes a panic inside this plugin print one line on stderr (no
/// backtrace): the SDK catches it and the host reports and handles it. Each
/// plugin library has its own copy of std, hence its own hook; called by
/// `export_plugin!` when the library is loaded.
#[doc(hidden)]
pub fn install_panic_hook(plugin: &'static str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(move |info| {
            // Redacted and truncated like the error itself (no call data).
            let msg = panic_text(info.payload());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("plugin {plugin} panicked{at}: {msg} (caught and reported to the host)");
        }));
    });
}

/// Runs `f`, turning a panic into a `Panic` error.
pub fn guard<T>(f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.into(),
        Err(payload) => RResult::RErr(panic_error(payload)),
    }
}

/// Adapts an SDK [`Connector`] to the FFI trait. Used by `export_plugin!`.
#[doc(hidden)]
pub struct ConnectorAdapter<T>(pub T);

impl<T: Connector> ConnectorApi for ConnectorAdapter<T> {
    fn start(&mut self, calls: RVec<CallInfo>) -> RResult<(), PluginError> {
        guard(|| self.0.start(calls.into_vec()))
    }
    fn poll(&mut self) -> RResult<RVec<ConnectorEvent>, PluginError> {
        guard(|| self.0.poll().map(RVec::from))
    }
    fn execute(&mut self, command: &Command) -> RResult<Outcome, PluginError> {
        guard(|| self.0.execute(command))
    }
    fn capabilities(&self) -> Capabilities {
        catch_unwind(AssertUnwindSafe(|| self.0.capabilities())).unwrap_or(Capabilities::NONE)
    }
    fn calls(&self) -> RVec<CallInfo> {
        catch_unwind(AssertUnwindSafe(|| RVec::from(self.0.calls()))).unwrap_or_default()
    }
    fn stop(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.stop())
    }
}

/// Adapts an SDK [`Control`] to the FFI trait. Used by `export_plugin!`.
#[doc(hidden)]
pub struct ControlAdapter<T>(pub T);

impl<T: Control> ControlApi for ControlAdapter<T> {
    fn start(&mut self, snapshot: &DesktopSnapshot) -> RResult<(), PluginError> {
        guard(|| self.0.start(snapshot))
    }
    fn on_event(&mut self, event: &DesktopEvent) -> RResult<(), PluginError> {
        guard(|| self.0.on_event(event))
    }
    fn resync(&mut self, snapshot: &DesktopSnapshot) -> RResult<(), PluginError> {
        guard(|| self.0.resync(snapshot))
    }
    fn stop(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.stop())
    }
    fn intercept(&mut self, request: &InterceptRequest) -> RResult<Verdict, PluginError> {
        guard(|| self.0.intercept(request))
    }
}

/// The `Unsupported` error a library returns for a kind it does not build.
#[doc(hidden)]
pub fn no_such_kind(kind: &str) -> PluginError {
    PluginError::new(
        ErrorKind::UNSUPPORTED,
        format!("this library provides no {kind}"),
    )
}

/// Builds the `RString` of a `&str` (for the macro).
#[doc(hidden)]
pub fn rstring(s: &str) -> RString {
    RString::from(s)
}

/// Exports a plugin library's root module.
///
/// ```ignore
/// cti_plugin_api::export_plugin!(connector = MyConnector);
/// cti_plugin_api::export_plugin!(control = MyControl);
/// cti_plugin_api::export_plugin!(connector = MyConnector, control = MyControl);
/// ```
///
/// The plugin's name, version and description come from its `Cargo.toml`.
/// The crate must also depend on `abi_stable` (the root-module attribute
/// refers to it by its absolute path).
#[macro_export]
macro_rules! export_plugin {
    (connector = $conn:ty $(,)?) => {
        $crate::export_plugin!(@emit $conn, $crate::sdk::NoControl);
    };
    (control = $ctl:ty $(,)?) => {
        $crate::export_plugin!(@emit $crate::sdk::NoConnector, $ctl);
    };
    (connector = $conn:ty, control = $ctl:ty $(,)?) => {
        $crate::export_plugin!(@emit $conn, $ctl);
    };
    (@emit $conn:ty, $ctl:ty) => {
        #[$crate::abi_stable::export_root_module]
        #[doc(hidden)]
        pub fn __cti_plugin_root_module() -> $crate::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::sdk::install_panic_hook(env!("CARGO_PKG_NAME"));
            $crate::PluginMod {
                info: __cti_plugin_info,
                new_connector: __cti_plugin_new_connector,
                new_control: __cti_plugin_new_control,
            }
            .leak_into_prefix()
        }

        #[doc(hidden)]
        extern "C" fn __cti_plugin_info() -> $crate::PluginInfo {
            let mut kinds = $crate::PluginKinds(0);
            if <$conn as $crate::sdk::ConnectorSlot>::REAL {
                kinds = kinds | $crate::PluginKinds::CONNECTOR;
            }
            if <$ctl as $crate::sdk::ControlSlot>::REAL {
                kinds = kinds | $crate::PluginKinds::CONTROL;
            }
            $crate::PluginInfo {
                name: $crate::sdk::rstring(env!("CARGO_PKG_NAME")),
                version: $crate::sdk::rstring(env!("CARGO_PKG_VERSION")),
                description: $crate::sdk::rstring(env!("CARGO_PKG_DESCRIPTION")),
                kinds,
                api_version: $crate::sdk::rstring($crate::API_VERSION),
                capabilities: <$conn as $crate::sdk::ConnectorSlot>::declared_capabilities(),
            }
        }

        #[doc(hidden)]
        extern "C" fn __cti_plugin_new_connector(
            host: $crate::HostHandle,
            settings: $crate::abi_stable::std_types::RStr<'_>,
        ) -> $crate::abi_stable::std_types::RResult<$crate::ConnectorBox, $crate::PluginError> {
            $crate::sdk::guard(|| <$conn as $crate::sdk::ConnectorSlot>::build_connector(
                host,
                settings.as_str(),
            ))
        }

        #[doc(hidden)]
        extern "C" fn __cti_plugin_new_control(
            host: $crate::HostHandle,
            settings: $crate::abi_stable::std_types::RStr<'_>,
        ) -> $crate::abi_stable::std_types::RResult<$crate::ControlBox, $crate::PluginError> {
            $crate::sdk::guard(|| <$ctl as $crate::sdk::ControlSlot>::build_control(
                host,
                settings.as_str(),
            ))
        }
    };
}

/// The connector slot of a library (`export_plugin!` internals).
#[doc(hidden)]
pub trait ConnectorSlot {
    const REAL: bool;
    fn declared_capabilities() -> Capabilities;
    fn build_connector(host: HostHandle, settings: &str) -> Result<ConnectorBox, PluginError>;
}

impl<T: NewConnector> ConnectorSlot for T {
    const REAL: bool = true;
    fn declared_capabilities() -> Capabilities {
        T::CAPABILITIES
    }
    fn build_connector(host: HostHandle, settings: &str) -> Result<ConnectorBox, PluginError> {
        let c = T::new(Host::from_handle(host), Settings::from_toml(settings))?;
        Ok(ConnectorApi_TO::from_value(ConnectorAdapter(c), TD_Opaque))
    }
}

/// Stands for "this library has no connector".
#[doc(hidden)]
pub struct NoConnector;

impl ConnectorSlot for NoConnector {
    const REAL: bool = false;
    fn declared_capabilities() -> Capabilities {
        Capabilities::NONE
    }
    fn build_connector(_host: HostHandle, _settings: &str) -> Result<ConnectorBox, PluginError> {
        Err(no_such_kind("connector"))
    }
}

/// The control slot of a library (`export_plugin!` internals).
#[doc(hidden)]
pub trait ControlSlot {
    const REAL: bool;
    fn build_control(host: HostHandle, settings: &str) -> Result<ControlBox, PluginError>;
}

impl<T: NewControl> ControlSlot for T {
    const REAL: bool = true;
    fn build_control(host: HostHandle, settings: &str) -> Result<ControlBox, PluginError> {
        let c = T::new(Host::from_handle(host), Settings::from_toml(settings))?;
        Ok(ControlApi_TO::from_value(ControlAdapter(c), TD_Opaque))
    }
}

/// Stands for "this library has no control".
#[doc(hidden)]
pub struct NoControl;

impl ControlSlot for NoControl {
    const REAL: bool = false;
    fn build_control(_host: HostHandle, _settings: &str) -> Result<ControlBox, PluginError> {
        Err(no_such_kind("control"))
    }
}
