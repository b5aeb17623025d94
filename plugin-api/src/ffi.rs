//! FFI-safe data that crosses the plugin boundary.
//!
//! Every type here is `#[repr(C)]`/`#[repr(u8)]` and derives `StableAbi`, so
//! abi_stable checks its layout when a library is loaded.
//!
//! # Evolution
//! Structs that cross by value cannot grow (only prefix types can), so each
//! carries an `attrs` list for additions that do not deserve a new major
//! version. Sets of names that will grow (event kinds, command kinds, error
//! kinds, capabilities) are *open codes*: a `#[repr(transparent)]` integer with
//! associated constants, as abi_stable's `library_evolution` document
//! recommends. A host built against 1.y meets codes from 1.x (x ≤ y) only; a
//! plugin built against 1.y that sends a code unknown to an older host gets it
//! back as `Unknown` (events) or an `Unsupported` error (commands).

use std::fmt;

use abi_stable::{
    std_types::{RArc, ROption, RString, RVec},
    StableAbi,
};

/// State of one party's connection in a call (ECMA-269 CSTA connection states).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// No relationship between the call and the device (cleared).
    Null,
    /// The device is originating a call (dial tone, digits being collected).
    Initiated,
    /// The device is being alerted (ringing).
    Alerting,
    /// The device is actively participating in the call.
    Connected,
    /// The device has put the call on hold.
    Held,
    /// The call is queued for the device.
    Queued,
    /// The call cannot complete (busy, no answer, network failure).
    Failed,
}

impl ConnectionState {
    /// All states, in declaration order.
    pub const ALL: [ConnectionState; 7] = [
        Self::Null,
        Self::Initiated,
        Self::Alerting,
        Self::Connected,
        Self::Held,
        Self::Queued,
        Self::Failed,
    ];

    /// The CSTA name of the state (`"Alerting"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Null => "Null",
            Self::Initiated => "Initiated",
            Self::Alerting => "Alerting",
            Self::Connected => "Connected",
            Self::Held => "Held",
            Self::Queued => "Queued",
            Self::Failed => "Failed",
        }
    }

    /// Parses a CSTA name, ignoring ASCII case.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// True while the connection still exists (not `Null` or `Failed`).
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Null | Self::Failed)
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which side placed the call.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The far end called the agent.
    Inbound,
    /// The agent placed the call.
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// The agent's state.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Not signed in to the channel.
    LoggedOut,
    /// Signed in but not taking work, with an admin reason code.
    NotReady(RString),
    /// Waiting for work.
    Ready,
    /// Handling live work (derived by the desktop from live interactions).
    Busy,
    /// After-call work (wrap-up).
    WorkingAfterCall,
}

impl AgentState {
    /// The state's name without its reason: `"NotReady"`, `"Ready"`, ….
    pub fn name(&self) -> &'static str {
        match self {
            Self::LoggedOut => "LoggedOut",
            Self::NotReady(_) => "NotReady",
            Self::Ready => "Ready",
            Self::Busy => "Busy",
            Self::WorkingAfterCall => "WorkingAfterCall",
        }
    }

    /// The reason code of `NotReady`, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::NotReady(r) => Some(r.as_str()),
            _ => None,
        }
    }

    /// Parses `"Ready"`, `"LoggedOut"`, `"WorkingAfterCall"`, `"Busy"`,
    /// `"NotReady"` or `"NotReady(Reason)"` (names ignore ASCII case).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some(rest) = strip_prefix_ci(text, "notready") {
            let rest = rest.trim();
            if rest.is_empty() {
                return Some(Self::NotReady(RString::new()));
            }
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            return Some(Self::NotReady(inner.trim().into()));
        }
        [
            Self::LoggedOut,
            Self::Ready,
            Self::Busy,
            Self::WorkingAfterCall,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(text))
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady(r) if !r.is_empty() => write!(f, "NotReady({r})"),
            other => f.write_str(other.name()),
        }
    }
}

/// One key/value pair of attached data (call data, extension attributes).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: RString,
    /// The value.
    pub value: RString,
}

impl KeyValue {
    /// Builds a pair.
    pub fn new(key: impl Into<RString>, value: impl Into<RString>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Looks a key up in a list of pairs.
pub fn lookup<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

/// What a connector knows of one interaction (a call, a chat…) on its system.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The connector's unique id for the call (a SIP Call-ID, a JID…).
    pub call_id: RString,
    /// Who placed it.
    pub direction: Direction,
    /// Calling number / address (ANI).
    pub ani: RString,
    /// Called number / address (DNIS).
    pub dnis: RString,
    /// The state of the agent's own connection.
    pub state: ConnectionState,
    /// Attached call data (IVR input, queue name…), in order.
    pub data: RVec<KeyValue>,
}

macro_rules! open_code {
    (
        $(#[$meta:meta])*
        $name:ident($repr:ty) { $( $(#[$cmeta:meta])* $konst:ident = $value:expr => $text:expr ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $repr);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: Self = Self($value); )*

            /// Every code this version of the API knows.
            pub const KNOWN: &'static [Self] = &[$(Self::$konst),*];

            /// The name of a known code, `None` for one from a newer API.
            pub fn known_name(self) -> Option<&'static str> {
                match self {
                    $( Self::$konst => Some($text), )*
                    _ => None,
                }
            }

            /// Parses a name (ASCII case and `_`/`-` are ignored).
            pub fn parse(text: &str) -> Option<Self> {
                let want: String = text
                    .chars()
                    .filter(|c| *c != '_' && *c != '-')
                    .collect();
                Self::KNOWN
                    .iter()
                    .copied()
                    .find(|k| k.known_name().is_some_and(|n| n.eq_ignore_ascii_case(&want)))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.known_name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "Unknown({})", self.0),
                }
            }
        }
    };
}

open_code! {
    /// The kind of an event, from a connector or from the desktop manager.
    ///
    /// Codes below 100 are raised by connectors and named after ECMA-269
    /// CSTA events; codes from 100 on are raised by the desktop manager.
    EventKind(u16) {
        /// A call is alerting at the agent (a new inbound call, or an
        /// existing call now ringing). Carries `call` when the call is new.
        DELIVERED = 1 => "Delivered",
        /// The agent's device has originated a call (outbound). Carries `call`.
        ORIGINATED = 2 => "Originated",
        /// The call is connected (answered by the agent or by the far end).
        ESTABLISHED = 3 => "Established",
        /// The agent put the call on hold.
        HELD = 4 => "Held",
        /// The agent took the call off hold.
        RETRIEVED = 5 => "Retrieved",
        /// The call was transferred: `party` is the transferring party,
        /// `target` the new destination (in `text`).
        TRANSFERRED = 6 => "Transferred",
        /// Calls were merged into a conference; `related_call_id` names the
        /// call merged into `call_id`.
        CONFERENCED = 7 => "Conferenced",
        /// One party's connection left the call; `party` names it. When the
        /// agent's own connection clears, `state` is `Null`.
        CONNECTION_CLEARED = 8 => "ConnectionCleared",
        /// The whole call is over.
        CALL_CLEARED = 9 => "CallCleared",
        /// The call could not complete; `cause` says why.
        FAILED = 10 => "Failed",
        /// DTMF digits (in `text`) were sent on the call.
        DIGITS_GENERATED = 11 => "DigitsGenerated",
        /// The agent's state changed. From a connector: the switch reports
        /// a new state (`agent_state`), confirming a `SetAgentState`. From
        /// the desktop: the effective state changed (`agent`; `cause` =
        /// `confirmed`, `work` or `pending-applied`).
        AGENT_STATE_CHANGED = 12 => "AgentStateChanged",
        /// The connector's link to its system is up.
        LINK_UP = 13 => "LinkUp",
        /// The connector's link to its system is down (`cause` says why).
        LINK_DOWN = 14 => "LinkDown",
        /// The connector is reconnecting to its system.
        LINK_RECONNECTING = 15 => "LinkReconnecting",
        /// The call is queued (for example in an ACD group).
        QUEUED = 16 => "Queued",
        /// The agent's microphone was muted on the call.
        MUTED = 17 => "Muted",
        /// The agent's microphone was unmuted on the call.
        UNMUTED = 18 => "Unmuted",
        /// A text message arrived from the far end (`text`).
        MESSAGE_RECEIVED = 19 => "MessageReceived",
        /// A text message from the agent was delivered (`text`).
        MESSAGE_SENT = 20 => "MessageSent",
        /// A far-end participant left the interaction (`party`).
        PARTICIPANT_LEFT = 21 => "ParticipantLeft",
        /// The far end is typing (`text` = `composing`, `paused`, `active`).
        TYPING = 22 => "Typing",
        /// The far end of a call is ringing (outbound).
        NETWORK_REACHED = 23 => "NetworkReached",
        /// DTMF digits from the far end (`text`; since 1.2). Hosts before
        /// 1.2 pass it on as `Unknown(24)` and change nothing.
        DIGITS_RECEIVED = 24 => "DigitsReceived",

        /// An agent-state request is stored until the agent's work ends
        /// (`agent.pending`).
        AGENT_STATE_PENDING = 100 => "AgentStatePending",
        /// An agent-state request was refused (`cause`, `text`).
        AGENT_STATE_REJECTED = 101 => "AgentStateRejected",
        /// A command from a control completed (`request_id`).
        COMMAND_COMPLETED = 102 => "CommandCompleted",
        /// A command from a control failed or was refused (`request_id`,
        /// `cause` = the error kind, `text` = the reason).
        COMMAND_FAILED = 103 => "CommandFailed",
        /// A plugin's status changed (`source`; `text` = `Running`,
        /// `Restarting`, `Faulted`, `Stopped`; `cause` says why).
        PLUGIN_STATUS = 104 => "PluginStatus",
        /// A connector's link status as seen by the desktop (`source`,
        /// `text` = `Connected`, `Disconnected`, `Reconnecting`).
        CONNECTOR_STATUS = 105 => "ConnectorStatus",
        /// A call's view changed without a CSTA event (allowed actions, data,
        /// work item). A connector may raise it too (since 1.2), for a call the desktop
        /// knows, with `call` carrying the changed call data (merged into the
        /// call's data) and, when not empty, a new DNIS; the state stays. The
        /// desktop passes it on with the attribute `origin = connector`.
        CALL_UPDATED = 106 => "CallUpdated",
        /// The desktop forgot a call (after it cleared and its work ended).
        CALL_REMOVED = 107 => "CallRemoved",
        /// The work item of an interaction changed (`call.work`).
        WORK_ITEM = 108 => "WorkItem",
        /// A hot reload replaced a plugin (`source`, `text` = new version).
        PLUGIN_RELOADED = 109 => "PluginReloaded",
        /// A hot reload was refused; the old instance keeps running.
        PLUGIN_RELOAD_FAILED = 110 => "PluginReloadFailed",
        /// A CTI lookup started for a new interaction.
        LOOKUP_REQUESTED = 111 => "LookupRequested",
        /// A CTI lookup finished (`session`).
        LOOKUP_RESOLVED = 112 => "LookupResolved",
        /// An agent session opened (`session`).
        SESSION_OPENED = 113 => "SessionOpened",
        /// An agent session got the focus (`session`).
        SESSION_FOCUSED = 114 => "SessionFocused",
        /// An agent session closed (`session`).
        SESSION_CLOSED = 115 => "SessionClosed",
        /// The desktop is up and every plugin started.
        DESKTOP_READY = 116 => "DesktopReady",
        /// The desktop is shutting down.
        DESKTOP_STOPPING = 117 => "DesktopStopping",
        /// A command was submitted (since 1.1): `request_id`, and attrs
        /// `requester`, `command`, `call_id`, `other_call_id`, `target`,
        /// `text`, `agent_state`, `connector` (the audit trail, and what
        /// `cti-host replay` re-submits).
        COMMAND_REQUESTED = 118 => "CommandRequested",
    }
}

impl EventKind {
    /// True for codes raised by the desktop manager rather than a connector.
    pub fn is_desktop(self) -> bool {
        self.0 >= 100
    }

    /// True for the codes a connector may raise: every code below 100, and
    /// `CallUpdated` (a data update of a known call; since 1.2).
    pub fn connector_may_raise(self) -> bool {
        !self.is_desktop() || self == Self::CALL_UPDATED
    }
}

open_code! {
    /// The kind of a command. Codes below 64 are call-control commands that a
    /// connector may support (each is one bit of [`Capabilities`]); codes
    /// from 64 on are handled by the desktop manager itself.
    CommandKind(u16) {
        /// Answer an alerting call.
        ANSWER = 0 => "Answer",
        /// Refuse an alerting call.
        REJECT = 1 => "Reject",
        /// Clear the agent's connection.
        HANGUP = 2 => "Hangup",
        /// Put a connected call on hold.
        HOLD = 3 => "Hold",
        /// Take a held call off hold.
        RETRIEVE = 4 => "Retrieve",
        /// Place a call to `target`.
        MAKE_CALL = 5 => "MakeCall",
        /// Send the DTMF digits in `target`.
        SEND_DTMF = 6 => "SendDtmf",
        /// Mute the agent's microphone.
        MUTE = 7 => "Mute",
        /// Unmute the agent's microphone.
        UNMUTE = 8 => "Unmute",
        /// Single-step transfer of `call_id` to `target`.
        BLIND_TRANSFER = 9 => "BlindTransfer",
        /// Hold `call_id` and place a consultation call to `target`.
        CONSULT = 10 => "Consult",
        /// Complete a consult transfer: `call_id` (held) joins `other_call_id`.
        COMPLETE_TRANSFER = 11 => "CompleteTransfer",
        /// Cancel a consultation: clear `other_call_id`, retrieve `call_id`.
        CANCEL_CONSULT = 12 => "CancelConsult",
        /// Merge the held `call_id` and the active `other_call_id`.
        CONFERENCE = 13 => "Conference",
        /// Hold the active `other_call_id` and retrieve the held `call_id`.
        ALTERNATE = 14 => "Alternate",
        /// Ask the switch for a new agent state (`agent_state`).
        SET_AGENT_STATE = 15 => "SetAgentState",
        /// Send the text in `text` on a chat interaction.
        SEND_MESSAGE = 16 => "SendMessage",
        /// Tell the far end that the agent is typing (`text`).
        SEND_TYPING = 17 => "SendTyping",

        /// End wrap-up of `call_id` (desktop).
        END_WRAP_UP = 64 => "EndWrapUp",
        /// Extend wrap-up of `call_id` by `target` seconds (desktop).
        EXTEND_WRAP_UP = 65 => "ExtendWrapUp",
        /// Set the disposition code (`text`) of `call_id` (desktop).
        SET_DISPOSITION = 66 => "SetDisposition",
        /// Focus the agent session of `call_id` (desktop).
        FOCUS_SESSION = 67 => "FocusSession",
        /// Clear a pending agent-state request (desktop).
        CLEAR_PENDING_STATE = 68 => "ClearPendingState",
        /// Pick `target` (a contact id) in a session's pick list (desktop).
        PICK_CONTACT = 69 => "PickContact",
    }
}

impl CommandKind {
    /// True for commands the desktop manager handles itself.
    pub fn is_desktop(self) -> bool {
        self.0 >= 64
    }
}

/// A set of call-control commands: what a connector supports, or what a call
/// allows right now. Bit `n` stands for the [`CommandKind`] with code `n`.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// No command.
    pub const NONE: Self = Self(0);

    /// The set holding one command (empty for desktop commands).
    pub const fn of(kind: CommandKind) -> Self {
        if kind.0 < 64 {
            Self(1 << kind.0)
        } else {
            Self(0)
        }
    }

    /// Builds a set from a list of commands (usable in a `const`).
    pub const fn from_kinds(kinds: &[CommandKind]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < kinds.len() {
            bits |= Self::of(kinds[i]).0;
            i += 1;
        }
        Self(bits)
    }

    /// The union of two sets (usable in a `const`).
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// True when `kind` is in the set.
    pub const fn contains(self, kind: CommandKind) -> bool {
        kind.0 < 64 && self.0 & (1 << kind.0) != 0
    }

    /// The commands in the set, in code order.
    pub fn kinds(self) -> impl Iterator<Item = CommandKind> {
        (0..64u16)
            .filter(move |b| self.0 & (1 << b) != 0)
            .map(CommandKind)
    }

    /// The intersection of two sets.
    pub const fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Capabilities {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.kinds()).finish()
    }
}

/// An event raised by a connector (instance model: through
/// [`HostApi::emit`](crate::HostApi); polling model: returned by `poll`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ConnectorEvent {
    /// What happened.
    pub kind: EventKind,
    /// The call it happened to (empty for link and agent events).
    pub call_id: RString,
    /// The state of the agent's connection after the event.
    pub state: ConnectionState,
    /// The whole call, on `Delivered`/`Originated` (new calls).
    pub call: ROption<CallInfo>,
    /// The other party involved (who cleared, who transferred…).
    pub party: RString,
    /// A second call involved (consultation, conference, alternate).
    pub related_call_id: RString,
    /// CSTA cause or the system's reason text.
    pub cause: RString,
    /// Digits, message text, transfer target.
    pub text: RString,
    /// The new agent state, on `AgentStateChanged`.
    pub agent_state: ROption<AgentState>,
    /// Extension attributes.
    pub attrs: RVec<KeyValue>,
}

impl ConnectorEvent {
    /// An event of `kind` on `call_id` with the agent's connection in `state`.
    pub fn new(kind: EventKind, call_id: impl Into<RString>, state: ConnectionState) -> Self {
        Self {
            kind,
            call_id: call_id.into(),
            state,
            call: ROption::RNone,
            party: RString::new(),
            related_call_id: RString::new(),
            cause: RString::new(),
            text: RString::new(),
            agent_state: ROption::RNone,
            attrs: RVec::new(),
        }
    }

    /// Sets the other party involved.
    pub fn with_party(mut self, party: impl Into<RString>) -> Self {
        self.party = party.into();
        self
    }

    /// Sets the cause.
    pub fn with_cause(mut self, cause: impl Into<RString>) -> Self {
        self.cause = cause.into();
        self
    }

    /// Sets the text (digits, message, target).
    pub fn with_text(mut self, text: impl Into<RString>) -> Self {
        self.text = text.into();
        self
    }

    /// Attaches the whole call (new calls, resynchronisation).
    pub fn with_call(mut self, call: CallInfo) -> Self {
        self.call = ROption::RSome(call);
        self
    }

    /// Sets the related call.
    pub fn with_related_call(mut self, call_id: impl Into<RString>) -> Self {
        self.related_call_id = call_id.into();
        self
    }
}

impl CallInfo {
    /// A call with no attached data.
    pub fn new(
        call_id: impl Into<RString>,
        direction: Direction,
        ani: impl Into<RString>,
        dnis: impl Into<RString>,
        state: ConnectionState,
    ) -> Self {
        Self {
            call_id: call_id.into(),
            direction,
            ani: ani.into(),
            dnis: dnis.into(),
            state,
            data: RVec::new(),
        }
    }
}

/// A command for a connector (or for the desktop manager).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What to do.
    pub kind: CommandKind,
    /// The call it applies to.
    pub call_id: RString,
    /// A second call (consult, conference, alternate).
    pub other_call_id: RString,
    /// Number or address (make call, transfer), digits (DTMF), seconds.
    pub target: RString,
    /// Message text, reason, disposition.
    pub text: RString,
    /// The requested agent state, for `SetAgentState`.
    pub agent_state: ROption<AgentState>,
    /// The hosted control that must carry the command (empty: the desktop
    /// routes it to the connector that owns the call, or the first one of
    /// the call's channel).
    pub connector: RString,
    /// Extension attributes.
    pub attrs: RVec<KeyValue>,
}

impl Command {
    /// A command of `kind` for `call_id`.
    pub fn new(kind: CommandKind, call_id: impl Into<RString>) -> Self {
        Self {
            kind,
            call_id: call_id.into(),
            other_call_id: RString::new(),
            target: RString::new(),
            text: RString::new(),
            agent_state: ROption::RNone,
            connector: RString::new(),
            attrs: RVec::new(),
        }
    }
}

/// What a successful command returns.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The call the command created (make call, consult), if any.
    pub call_id: RString,
    /// Text for the agent or the log.
    pub detail: RString,
}

open_code! {
    /// The kind of a [`PluginError`].
    ErrorKind(u16) {
        /// The connector does not support the command.
        UNSUPPORTED = 1 => "Unsupported",
        /// The command is not allowed in the call's current state.
        INVALID_STATE = 2 => "InvalidState",
        /// No such call.
        UNKNOWN_CALL = 3 => "UnknownCall",
        /// The hosted control's settings are wrong.
        BAD_SETTINGS = 4 => "BadSettings",
        /// The link to the communications system is down.
        LINK_DOWN = 5 => "LinkDown",
        /// The plugin panicked; the SDK caught it.
        PANIC = 6 => "Panic",
        /// The call did not return in time.
        TIMEOUT = 7 => "Timeout",
        /// Refused by policy (an interceptor's veto, capacity…).
        REFUSED = 8 => "Refused",
        /// The system answered with an error.
        REMOTE = 9 => "Remote",
        /// Any other failure.
        INTERNAL = 10 => "Internal",
        /// The arguments of a command are wrong.
        BAD_ARGUMENT = 11 => "BadArgument",
        /// The plugin is stopped, restarting or faulted.
        UNAVAILABLE = 12 => "Unavailable",
    }
}

/// A typed error crossing the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// What went wrong, for callers that branch.
    pub kind: ErrorKind,
    /// One line for people.
    pub message: RString,
}

impl PluginError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<RString>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PluginError {}

/// What kinds of hosted control a library provides (bit set).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PluginKinds(pub u8);

impl PluginKinds {
    /// The library builds connectors.
    pub const CONNECTOR: Self = Self(1);
    /// The library builds controls.
    pub const CONTROL: Self = Self(2);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// `["connector", "control"]`, as applicable.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.contains(Self::CONNECTOR) {
            v.push("connector");
        }
        if self.contains(Self::CONTROL) {
            v.push("control");
        }
        v
    }
}

impl std::ops::BitOr for PluginKinds {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Describes a plugin library.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name (`sim-connector`).
    pub name: RString,
    /// The plugin's own semver.
    pub version: RString,
    /// One line saying what it is.
    pub description: RString,
    /// Connector, control, or both.
    pub kinds: PluginKinds,
    /// The semver of `cti-plugin-api` the plugin was built against.
    pub api_version: RString,
    /// The commands its connector supports (empty for controls).
    pub capabilities: Capabilities,
}

/// How a connector delivers its events (the hosted control's `connection`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionModel {
    /// The connector pushes events through `HostApi::emit` from its own threads.
    Instance,
    /// The host calls `poll` every `poll_interval_ms`.
    Polling,
}

/// The hosted control's entry in the manifest, as a plugin sees it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct HostedInfo {
    /// Its unique name.
    pub name: RString,
    /// Its channel (`voice`, `chat`…); empty for controls.
    pub channel: RString,
    /// How it delivers events.
    pub connection: ConnectionModel,
    /// The poll interval, for the polling model.
    pub poll_interval_ms: u64,
    /// The agent's id from `[desktop]`.
    pub agent_id: RString,
}

/// Log levels for [`HostApi::log`](crate::HostApi).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// A party (connection) in a call, as the desktop shows it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Number, address or role of the party.
    pub id: RString,
    /// Its connection state.
    pub state: ConnectionState,
}

open_code! {
    /// The state of a work item (one per interaction, kept apart from the
    /// telephony state).
    WorkState(u8) {
        /// Offered to the agent (ringing).
        OFFERED = 0 => "Offered",
        /// Accepted by the agent (answer sent).
        ACCEPTED = 1 => "Accepted",
        /// Being worked (connected, held…).
        ACTIVE = 2 => "Active",
        /// After-call work.
        WRAPPING = 3 => "Wrapping",
        /// Done.
        COMPLETED = 4 => "Completed",
        /// The agent refused it.
        REJECTED = 5 => "Rejected",
        /// It rang out without an answer.
        MISSED = 6 => "Missed",
        /// The far end gave up before it was accepted.
        CANCELED = 7 => "Canceled",
    }
}

/// The work item of an interaction.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct WorkItemView {
    /// Its state.
    pub state: WorkState,
    /// Milliseconds of wrap-up left (0 when not wrapping or unlimited).
    pub wrap_up_remaining_ms: u64,
    /// True when wrap-up lasts until the agent ends it.
    pub wrap_up_unlimited: bool,
    /// The disposition code chosen, if any.
    pub disposition: RString,
}

/// The desktop's view of one interaction, sent to controls.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    /// The connector's call id.
    pub call_id: RString,
    /// The hosted control (connector) that owns the call.
    pub connector: RString,
    /// The channel (`voice`, `chat`…).
    pub channel: RString,
    /// Who placed it.
    pub direction: Direction,
    /// Calling number or address.
    pub ani: RString,
    /// Called number or address.
    pub dnis: RString,
    /// The agent's connection state (the call's summary state).
    pub state: ConnectionState,
    /// The other parties.
    pub parties: RVec<Party>,
    /// The commands the agent may use on this call right now.
    pub allowed: Capabilities,
    /// True while the agent's microphone is muted.
    pub muted: bool,
    /// Attached call data.
    pub data: RVec<KeyValue>,
    /// Unix milliseconds when the call was first seen.
    pub started_ms: u64,
    /// Unix milliseconds when it was first connected (0: never).
    pub answered_ms: u64,
    /// The work item.
    pub work: WorkItemView,
    /// Extension attributes.
    pub attrs: RVec<KeyValue>,
}

open_code! {
    /// When an interceptor sees a command (cti-plugin-api 1.1).
    InterceptPhase(u8) {
        /// Before it reaches the connector: the interceptor may veto it.
        BEFORE = 0 => "Before",
        /// Instead of the connector: the one owner carries it out.
        REPLACE = 1 => "Replace",
        /// After it completed or failed: the interceptor sees the outcome.
        AFTER = 2 => "After",
    }
}

open_code! {
    /// An interceptor's answer (cti-plugin-api 1.1).
    VerdictKind(u8) {
        /// Let the command go on.
        CONTINUE = 0 => "Continue",
        /// Refuse the command; `reason` is shown to the agent.
        VETO = 1 => "Veto",
        /// The interceptor carried the command out (phase Replace);
        /// `outcome` is its result.
        HANDLED = 2 => "Handled",
    }
}

/// A command shown to an interceptor (cti-plugin-api 1.1).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct InterceptRequest {
    /// Before, Replace or After.
    pub phase: InterceptPhase,
    /// The request id the command was submitted under.
    pub request_id: u64,
    /// Who submitted it (hosted control name, `ctl`…).
    pub source: RString,
    /// The command, with the desktop's call ids.
    pub command: Command,
    /// Phase After: the outcome, when it succeeded.
    pub outcome: ROption<Outcome>,
    /// Phase After: the error, when it failed.
    pub error: ROption<PluginError>,
}

/// An interceptor's answer (cti-plugin-api 1.1).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Continue, Veto or Handled.
    pub kind: VerdictKind,
    /// Why (shown to the agent on a veto).
    pub reason: RString,
    /// The result of a Handled command.
    pub outcome: Outcome,
}

impl Verdict {
    /// Let the command go on.
    pub fn proceed() -> Self {
        Self {
            kind: VerdictKind::CONTINUE,
            reason: RString::new(),
            outcome: Outcome::default(),
        }
    }

    /// Refuse the command with a reason for the agent.
    pub fn veto(reason: impl Into<RString>) -> Self {
        Self {
            kind: VerdictKind::VETO,
            reason: reason.into(),
            outcome: Outcome::default(),
        }
    }

    /// The interceptor carried the command out.
    pub fn handled(outcome: Outcome) -> Self {
        Self {
            kind: VerdictKind::HANDLED,
            reason: RString::new(),
            outcome,
        }
    }
}

/// The agent's state as the desktop shows it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    /// The agent's id from the manifest.
    pub agent_id: RString,
    /// The effective state (`Busy` derived from live work).
    pub state: AgentState,
    /// The state requested while busy, applied when the work ends.
    pub pending: ROption<AgentState>,
}

/// A contact record from the directory.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Its id in the directory.
    pub id: RString,
    /// Display name.
    pub name: RString,
    /// Phone number or address, normalised.
    pub phone: RString,
    /// Other fields.
    pub fields: RVec<KeyValue>,
}

/// An agent session (one per interaction).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// Session id.
    pub session_id: RString,
    /// The interaction it belongs to.
    pub call_id: RString,
    /// `new-contact`, `contact`, `pick-list`, or the configured outcome.
    pub outcome: RString,
    /// The matched contact (single match).
    pub contact: ROption<Contact>,
    /// Candidates (multiple matches).
    pub candidates: RVec<Contact>,
    /// True when this session has the focus.
    pub focused: bool,
    /// Text transcript lines (`from: text`) for chat interactions.
    pub transcript: RVec<RString>,
}

/// The status of one hosted control, as the desktop sees it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginStatusView {
    /// Hosted control name.
    pub name: RString,
    /// `connector` or `control`.
    pub kind: RString,
    /// The plugin's version.
    pub version: RString,
    /// `Running`, `Restarting`, `Faulted`, `Stopped`.
    pub status: RString,
    /// For connectors: `Connected`, `Disconnected`, `Reconnecting`, `Unknown`.
    pub link: RString,
    /// The channel (connectors).
    pub channel: RString,
    /// Supported commands (connectors).
    pub capabilities: Capabilities,
}

/// An event from the desktop manager to the controls.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct DesktopEvent {
    /// Per-host sequence number, strictly increasing.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// Unix milliseconds.
    pub time_ms: u64,
    /// The call after the event, when it concerns a call.
    pub call: ROption<RArc<CallView>>,
    /// The agent after the event, when it concerns the agent.
    pub agent: ROption<AgentView>,
    /// The session, when it concerns one.
    pub session: ROption<SessionView>,
    /// The previous connection state, for call events.
    pub previous_state: ConnectionState,
    /// The hosted control that caused the event.
    pub source: RString,
    /// The other party involved.
    pub party: RString,
    /// CSTA cause, error kind, or reason.
    pub cause: RString,
    /// Free text (digits, message, reason, version…).
    pub text: RString,
    /// For command outcomes, the id `submit` returned.
    pub request_id: u64,
    /// Extension attributes.
    pub attrs: RVec<KeyValue>,
}

impl DesktopEvent {
    /// The call id, if the event concerns a call.
    pub fn call_id(&self) -> Option<&str> {
        match &self.call {
            ROption::RSome(c) => Some(c.call_id.as_str()),
            ROption::RNone => None,
        }
    }
}

/// Everything a control needs to draw the desktop from scratch.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct DesktopSnapshot {
    /// The sequence number of the last event included.
    pub seq: u64,
    /// The agent.
    pub agent: AgentView,
    /// Live interactions (and those still in wrap-up).
    pub calls: RVec<RArc<CallView>>,
    /// Open sessions.
    pub sessions: RVec<SessionView>,
    /// Hosted controls and their status.
    pub plugins: RVec<PluginStatusView>,
    /// NotReady reason codes from the manifest.
    pub reason_codes: RVec<RString>,
    /// Disposition codes from the manifest.
    pub dispositions: RVec<RString>,
}
