//! The TOML manifest: raw serde structs ([`raw`]) checked into the wiring the
//! host runs ([`Manifest`]). Every problem names file, line and column, and
//! all of them are reported at once.

mod raw;

use std::{
    collections::HashMap,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use cti_plugin_api::{AgentState, ConnectionModel};

use raw::{OneOrMany, RawManifest};

/// A manifest problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Every problem found in one manifest.
#[derive(Debug)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

/// Kinds of hosted control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// Talks to a communications system.
    Connector,
    /// What the agent touches.
    Control,
}

impl ControlType {
    /// `connector` or `control`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connector => "connector",
            Self::Control => "control",
        }
    }
}

/// A place in the manifest, kept for errors found after parsing (loading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One `[[hosted_control]]`, checked.
#[derive(Debug, Clone)]
pub struct HostedControl {
    /// Unique name.
    pub name: String,
    /// Connector or control.
    pub kind: ControlType,
    /// Library base name (`sim_connector`) or a path.
    pub library: String,
    /// Semver requirement on the plugin's version.
    pub version: semver::VersionReq,
    /// USD-style display group (informational for controls).
    pub display_group: String,
    /// Instance-based (push) or polling.
    pub connection: ConnectionModel,
    /// Poll interval for the polling model.
    pub poll_interval_ms: u64,
    /// Channel of a connector (`voice`, `chat`…).
    pub channel: String,
    /// Expected SHA-256 of the library file (hex), if pinned.
    pub sha256: Option<String>,
    /// `[host] allow_insecure_permissions`: load the library even when it
    /// or a directory above it is writable by group or others, or owned by
    /// someone else (see `loader::check_permissions`).
    pub allow_insecure_permissions: bool,
    /// The `settings` table, as TOML text for the plugin.
    pub settings: String,
    /// Where the entry's `library` key is, for load errors.
    pub location: Location,
    /// The commands this control intercepts.
    pub intercepts: Vec<Intercept>,
}

/// One `[[hosted_control.intercept]]`: a control sees a command before,
/// instead of, or after the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intercept {
    /// The command.
    pub command: cti_plugin_api::CommandKind,
    /// Before, Replace or After.
    pub phase: cti_plugin_api::InterceptPhase,
    /// Order among the interceptors of one command and phase: smaller first.
    pub priority: i64,
}

/// `[host]`, checked.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Directories searched for plugin libraries, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// Watch plugin files and reload them.
    pub hot_reload: bool,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// The `cti-host ctl` socket path (None: the default under the runtime dir).
    pub ctl_socket: Option<PathBuf>,
    /// How long a connector's `execute` may take.
    pub execute_timeout_ms: u64,
    /// Capacity of each control's event queue.
    pub control_queue: usize,
    /// How long the desktop waits on a full control queue before it
    /// declares the control lagging and resynchronises it later.
    pub lag_timeout_ms: u64,
    /// Capacity of the desktop's inbox (connector events, commands).
    pub inbox_capacity: usize,
    /// Load plugin libraries even when their file or a directory above it
    /// is writable by group or others or owned by another user (off: such
    /// a library is refused, like sshd's StrictModes).
    pub allow_insecure_permissions: bool,
    /// How callers' numbers appear in the host's logs.
    pub log_numbers: LogNumbers,
    /// Restarts allowed within `restart_window_secs` before a plugin is
    /// marked Faulted.
    pub restart_limit: u32,
    /// The window of the restart limit.
    pub restart_window_secs: u64,
    /// The first restart's delay; doubled for each restart in the window.
    pub restart_backoff_ms: u64,
    /// How long a changed plugin file must stay unchanged before a reload.
    pub reload_debounce_ms: u64,
}

/// How callers' numbers appear in logs (`[host] log_numbers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogNumbers {
    /// Only the last digits (`+***0100`), the default.
    #[default]
    Masked,
    /// In full (for a lab; personal data in the logs).
    Full,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[desktop]`, checked.
#[derive(Debug, Clone)]
pub struct DesktopSettings {
    /// The agent's id.
    pub agent_id: String,
    /// The agent state at start.
    pub initial_agent_state: AgentState,
    /// NotReady reason codes.
    pub reason_codes: Vec<String>,
    /// Disposition codes for wrap-up.
    pub dispositions: Vec<String>,
    /// Answer alerting inbound calls automatically.
    pub auto_answer: bool,
    /// Live interactions at once on a channel without its own entry in
    /// `capacity` (0 = unlimited).
    pub max_concurrent_calls: u32,
    /// Per-channel capacity (`voice = 1`, `chat = 3`).
    pub capacity: std::collections::BTreeMap<String, u32>,
    /// What to do with an inbound interaction over capacity.
    pub over_capacity: OverCapacity,
    /// After-call work: None = no wrap-up; Some(0) = until the agent ends
    /// it; Some(n) = n seconds.
    pub wrap_up_seconds: Option<u64>,
    /// An inbound call ringing this long is taken back as Missed (0 = never).
    pub ring_timeout_seconds: u64,
    /// The largest text message (bytes of UTF-8) sent or shown.
    pub max_message_bytes: usize,
}

/// What happens to an inbound interaction that arrives over capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCapacity {
    /// The desktop rejects it at once.
    Reject,
    /// It is left ringing; Answer stays disabled until capacity frees up.
    Ring,
}

impl DesktopSettings {
    /// The capacity of a channel (0 = unlimited).
    pub fn capacity_of(&self, channel: &str) -> u32 {
        self.capacity
            .get(channel)
            .copied()
            .unwrap_or(self.max_concurrent_calls)
    }
}

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it came from.
    pub path: PathBuf,
    /// `[host]`.
    pub host: HostSettings,
    /// `[desktop]`.
    pub desktop: DesktopSettings,
    /// `[[hosted_control]]`, in file order.
    pub hosted_controls: Vec<HostedControl>,
    /// `[directory]`: the contact directory, if any.
    pub directory: Option<DirectorySettings>,
    /// `[[lookup]]` rules, in file order (the first that applies wins).
    pub lookups: Vec<LookupRule>,
}

/// `[directory]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySettings {
    /// The SQLite file (relative paths resolved against the manifest).
    pub path: PathBuf,
    /// Country code for national numbers (`1`).
    pub default_country_code: String,
}

/// Which field of an interaction a lookup searches with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupField {
    /// The caller's number or address.
    Ani,
    /// The called number or address.
    Dnis,
    /// A call-data key.
    Data(String),
}

/// What the directory is searched by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupSearch {
    /// The contact's phone number (normalised).
    Phone,
    /// A contact field (a CSV column).
    Field(String),
}

/// What a lookup's 0, 1 or N matches turn into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupOutcome {
    /// A session with a new-contact form.
    NewContact,
    /// The matched contact's session.
    Contact,
    /// A pick list of the candidates.
    PickList,
    /// The first match's session.
    First,
    /// A session without a contact.
    NoContact,
}

impl LookupOutcome {
    /// The name shown to controls (`new-contact`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::NewContact => "new-contact",
            Self::Contact => "contact",
            Self::PickList => "pick-list",
            Self::First => "first",
            Self::NoContact => "no-contact",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::NewContact,
            Self::Contact,
            Self::PickList,
            Self::First,
            Self::NoContact,
        ]
        .into_iter()
        .find(|o| o.name() == s)
    }
}

/// One `[[lookup]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRule {
    /// Its name (for logs), or `lookup N`.
    pub name: String,
    /// Only interactions of this channel (None: any).
    pub channel: Option<String>,
    /// Only this direction (None: any).
    pub direction: Option<cti_plugin_api::Direction>,
    /// Only called numbers matching this glob (`*` any run, `?` one char).
    pub dnis: Option<String>,
    /// The interaction's field searched with.
    pub field: LookupField,
    /// What it is compared with in the directory.
    pub search: LookupSearch,
    /// Outcome of no match.
    pub on_none: LookupOutcome,
    /// Outcome of one match.
    pub on_one: LookupOutcome,
    /// Outcome of several matches.
    pub on_many: LookupOutcome,
}

impl LookupRule {
    /// Does the rule apply to this interaction?
    pub fn applies(&self, channel: &str, direction: cti_plugin_api::Direction, dnis: &str) -> bool {
        self.channel.as_deref().is_none_or(|c| c == channel)
            && self.direction.is_none_or(|d| d == direction)
            && self.dnis.as_deref().is_none_or(|g| glob(g, dnis))
    }
}

/// `*` matches any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Maps byte offsets to 1-based line and column.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }
}

struct Checker<'a> {
    file: &'a Path,
    index: LineIndex<'a>,
    errors: Vec<ManifestError>,
}

impl Checker<'_> {
    fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = span.map_or((0, 0), |s| self.index.position(s.start));
        self.errors.push(ManifestError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    fn location(&self, span: Range<usize>) -> Location {
        let (line, column) = self.index.position(span.start);
        Location {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }
}

/// Reads and checks a manifest file.
///
/// # Errors
/// Every problem, each with file, line and column.
pub fn load(path: &Path) -> Result<Manifest, ManifestErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ManifestErrors(vec![ManifestError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the manifest: {e}"),
        }])
    })?;
    parse(path, &text)
}

/// Checks manifest text; `path` names it in errors and anchors relative paths.
///
/// # Errors
/// Every problem, each with file, line and column.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestErrors> {
    let mut ck = Checker {
        file: path,
        index: LineIndex::new(text),
        errors: Vec::new(),
    };
    let raw: RawManifest = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let msg = e.message().trim().to_owned();
            ck.error(e.span(), msg);
            return Err(ManifestErrors(ck.errors));
        }
    };
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));

    let host = check_host(&mut ck, &base, raw.host);
    let desktop = check_desktop(&mut ck, raw.desktop);
    let mut hosted_controls = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // (command, phase) → (owner, line, priority) of the last claim.
    type Claims = Vec<(String, usize, i64)>;
    let mut claims: HashMap<(cti_plugin_api::CommandKind, cti_plugin_api::InterceptPhase), Claims> =
        HashMap::new();
    for hc in raw.hosted_control {
        let name_span = hc.name.span();
        let name = hc.name.into_inner();
        if name.trim().is_empty() {
            ck.error(Some(name_span.clone()), "hosted control name is empty");
        }
        if let Some(first_line) = seen.get(&name) {
            ck.error(
                Some(name_span.clone()),
                format!(
                    "duplicate hosted control name \"{name}\" (first defined on line {first_line})"
                ),
            );
        } else {
            seen.insert(name.clone(), ck.index.position(name_span.start).0);
        }
        let kind = match hc.kind.get_ref().as_str() {
            "connector" => ControlType::Connector,
            "control" => ControlType::Control,
            other => {
                ck.error(
                    Some(hc.kind.span()),
                    format!("hosted control \"{name}\": type must be \"connector\" or \"control\", not \"{other}\""),
                );
                ControlType::Control
            }
        };
        let version = match &hc.version {
            None => semver::VersionReq::STAR,
            Some(v) => match semver::VersionReq::parse(v.get_ref()) {
                Ok(r) => r,
                Err(e) => {
                    ck.error(
                        Some(v.span()),
                        format!(
                            "hosted control \"{name}\": bad version requirement \"{}\": {e}",
                            v.get_ref()
                        ),
                    );
                    semver::VersionReq::STAR
                }
            },
        };
        let connection = match hc
            .connection
            .as_ref()
            .map(|c| (c.get_ref().as_str(), c.span()))
        {
            None | Some(("instance", _)) => ConnectionModel::Instance,
            Some(("polling", _)) => ConnectionModel::Polling,
            Some((other, span)) => {
                ck.error(
                    Some(span),
                    format!("hosted control \"{name}\": connection must be \"instance\" or \"polling\", not \"{other}\""),
                );
                ConnectionModel::Instance
            }
        };
        let poll_interval_ms = match &hc.poll_interval_ms {
            None => 100,
            Some(p) if *p.get_ref() == 0 => {
                ck.error(
                    Some(p.span()),
                    format!("hosted control \"{name}\": poll_interval_ms must be at least 1"),
                );
                100
            }
            Some(p) => *p.get_ref(),
        };
        let sha256 = hc.sha256.as_ref().map(|s| {
            let v = s.get_ref().trim().to_ascii_lowercase();
            if v.len() != 64 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
                ck.error(
                    Some(s.span()),
                    format!("hosted control \"{name}\": sha256 must be 64 hex digits"),
                );
            }
            v
        });
        let library = hc.library.get_ref().trim().to_owned();
        if library.is_empty() {
            ck.error(
                Some(hc.library.span()),
                format!("hosted control \"{name}\": library is empty"),
            );
        }
        let settings = match toml::to_string(&hc.settings) {
            Ok(s) => s,
            Err(e) => {
                ck.error(
                    Some(name_span.clone()),
                    format!("hosted control \"{name}\": settings: {e}"),
                );
                String::new()
            }
        };
        let location = ck.location(hc.library.span());
        let mut intercepts = Vec::new();
        for ic in &hc.intercept {
            let Some(command) = cti_plugin_api::CommandKind::parse(ic.command.get_ref()) else {
                ck.error(
                    Some(ic.command.span()),
                    format!(
                        "hosted control \"{name}\": unknown command \"{}\" to intercept",
                        ic.command.get_ref()
                    ),
                );
                continue;
            };
            let Some(phase) = cti_plugin_api::InterceptPhase::parse(ic.phase.get_ref()) else {
                ck.error(
                    Some(ic.phase.span()),
                    format!("hosted control \"{name}\": phase must be \"before\", \"replace\" or \"after\", not \"{}\"", ic.phase.get_ref()),
                );
                continue;
            };
            if kind == ControlType::Connector {
                ck.error(
                    Some(ic.command.span()),
                    format!("hosted control \"{name}\": only controls intercept commands"),
                );
                continue;
            }
            let key = (command, phase);
            let here = ck.index.position(ic.command.span().start).0;
            let earlier = claims.entry(key).or_default();
            let clash = if phase == cti_plugin_api::InterceptPhase::REPLACE {
                earlier.first()
            } else {
                earlier
                    .iter()
                    .find(|(_, _, p)| *p == *ic.priority.get_ref())
            };
            if let Some((owner, line, prio)) = clash {
                if phase == cti_plugin_api::InterceptPhase::REPLACE {
                    ck.error(
                        Some(ic.command.span()),
                        format!("hosted control \"{name}\": {command} is already replaced by hosted control \"{owner}\" (line {line}); a command has at most one replace owner"),
                    );
                    continue;
                }
                if *prio == *ic.priority.get_ref() {
                    ck.error(
                        Some(ic.priority.span()),
                        format!("hosted control \"{name}\": {phase} interceptor of {command} has the same priority {prio} as hosted control \"{owner}\" (line {line}); priorities set the order and must differ"),
                    );
                    continue;
                }
            }
            earlier.push((name.clone(), here, *ic.priority.get_ref()));
            intercepts.push(Intercept {
                command,
                phase,
                priority: *ic.priority.get_ref(),
            });
        }
        hosted_controls.push(HostedControl {
            intercepts,
            name,
            kind,
            library,
            version,
            display_group: hc.display_group.unwrap_or_else(|| match kind {
                ControlType::Connector => "HiddenPanel".to_owned(),
                ControlType::Control => "MainPanel".to_owned(),
            }),
            connection,
            poll_interval_ms,
            channel: hc.channel.unwrap_or_else(|| "voice".to_owned()),
            sha256,
            allow_insecure_permissions: host.allow_insecure_permissions,
            settings,
            location,
        });
    }
    let directory = raw.directory.map(|d| DirectorySettings {
        path: {
            let p = PathBuf::from(expand_vars(&d.path));
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        },
        default_country_code: d.default_country_code.unwrap_or_default(),
    });
    let lookups = raw
        .lookup
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| check_lookup(&mut ck, i, l))
        .collect();
    if ck.errors.is_empty() {
        Ok(Manifest {
            path: path.to_path_buf(),
            host,
            desktop,
            hosted_controls,
            directory,
            lookups,
        })
    } else {
        Err(ManifestErrors(ck.errors))
    }
}

fn check_lookup(ck: &mut Checker<'_>, i: usize, l: raw::RawLookup) -> Option<LookupRule> {
    let name = l.name.unwrap_or_else(|| format!("lookup {}", i + 1));
    let before = ck.errors.len();
    let field = match l.field.get_ref().as_str() {
        "ani" => LookupField::Ani,
        "dnis" => LookupField::Dnis,
        other => match other.strip_prefix("data.") {
            Some(key) if !key.is_empty() => LookupField::Data(key.to_owned()),
            _ => {
                ck.error(
                    Some(l.field.span()),
                    format!("{name}: unknown field \"{other}\" (use ani, dnis or data.<key>)"),
                );
                LookupField::Ani
            }
        },
    };
    let search = match l.search.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("phone", _)) => LookupSearch::Phone,
        Some((other, span)) => {
            match other.strip_prefix("field.") {
                Some(key) if !key.is_empty() => LookupSearch::Field(key.to_owned()),
                _ => {
                    ck.error(
                    Some(span),
                    format!("{name}: search must be \"phone\" or \"field.<column>\", not \"{other}\""),
                );
                    LookupSearch::Phone
                }
            }
        }
    };
    let direction = match l
        .direction
        .as_ref()
        .map(|d| (d.get_ref().as_str(), d.span()))
    {
        None | Some(("any", _)) => None,
        Some(("inbound", _)) => Some(cti_plugin_api::Direction::Inbound),
        Some(("outbound", _)) => Some(cti_plugin_api::Direction::Outbound),
        Some((other, span)) => {
            ck.error(
                Some(span),
                format!("{name}: direction must be inbound, outbound or any, not \"{other}\""),
            );
            None
        }
    };
    let mut outcome = |v: Option<toml::Spanned<String>>, key: &str, default: LookupOutcome| {
        match v {
        None => default,
        Some(s) => LookupOutcome::parse(s.get_ref()).unwrap_or_else(|| {
            ck.error(
                Some(s.span()),
                format!(
                    "{name}: {key} must be new-contact, contact, pick-list, first or no-contact, not \"{}\"",
                    s.get_ref()
                ),
            );
            default
        }),
    }
    };
    let rule = LookupRule {
        on_none: outcome(l.on_none, "on_none", LookupOutcome::NewContact),
        on_one: outcome(l.on_one, "on_one", LookupOutcome::Contact),
        on_many: outcome(l.on_many, "on_many", LookupOutcome::PickList),
        name,
        channel: l.channel,
        direction,
        dnis: l.dnis,
        field,
        search,
    };
    (ck.errors.len() == before).then_some(rule)
}

fn check_host(ck: &mut Checker<'_>, base: &Path, raw: raw::RawHost) -> HostSettings {
    let plugin_dirs = match raw.plugin_dir {
        None => default_plugin_dirs(),
        Some(dirs) => {
            let list = match dirs.into_inner() {
                OneOrMany::One(d) => vec![d],
                OneOrMany::Many(v) => v,
            };
            list.into_iter()
                .map(|d| {
                    let p = PathBuf::from(expand_vars(&d));
                    if p.is_absolute() {
                        p
                    } else {
                        base.join(p)
                    }
                })
                .collect()
        }
    };
    let log_format = match raw.log_format {
        None => LogFormat::Text,
        Some(f) => match f.get_ref().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                ck.error(
                    Some(f.span()),
                    format!("log_format must be \"text\" or \"json\", not \"{other}\""),
                );
                LogFormat::Text
            }
        },
    };
    let log_numbers = match raw.log_numbers {
        None => LogNumbers::Masked,
        Some(v) => match v.get_ref().as_str() {
            "masked" => LogNumbers::Masked,
            "full" => LogNumbers::Full,
            other => {
                ck.error(
                    Some(v.span()),
                    format!("log_numbers must be \"masked\" or \"full\", not \"{other}\""),
                );
                LogNumbers::Masked
            }
        },
    };
    let mut positive = |v: Option<toml::Spanned<u64>>, key: &str, default: u64| match v {
        None => default,
        Some(s) if *s.get_ref() == 0 => {
            ck.error(Some(s.span()), format!("{key} must be at least 1"));
            default
        }
        Some(s) => *s.get_ref(),
    };
    let control_queue = positive(raw.control_queue, "control_queue", 65_536) as usize;
    let inbox_capacity = positive(raw.inbox_capacity, "inbox_capacity", 65_536) as usize;
    HostSettings {
        plugin_dirs,
        hot_reload: raw.hot_reload.unwrap_or(false),
        log_format,
        ctl_socket: raw.ctl_socket.map(|s| {
            let p = PathBuf::from(expand_vars(&s));
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        }),
        execute_timeout_ms: raw.execute_timeout_ms.unwrap_or(5_000).max(1),
        control_queue,
        lag_timeout_ms: raw.lag_timeout_ms.unwrap_or(1_000),
        inbox_capacity,
        allow_insecure_permissions: raw.allow_insecure_permissions.unwrap_or(false),
        log_numbers,
        restart_limit: raw.restart_limit.unwrap_or(5),
        restart_window_secs: raw.restart_window_secs.unwrap_or(60).max(1),
        restart_backoff_ms: raw.restart_backoff_ms.unwrap_or(200),
        reload_debounce_ms: raw.reload_debounce_ms.unwrap_or(300),
    }
}

fn check_desktop(ck: &mut Checker<'_>, raw: raw::RawDesktop) -> DesktopSettings {
    let reason_codes = raw.reason_codes.unwrap_or_else(|| {
        ["Break", "Lunch", "Meeting", "Training"]
            .map(String::from)
            .to_vec()
    });
    let initial_agent_state = match raw.initial_agent_state {
        None => AgentState::Ready,
        Some(s) => match AgentState::parse(s.get_ref()) {
            Some(AgentState::Busy | AgentState::WorkingAfterCall) | None => {
                ck.error(
                    Some(s.span()),
                    format!(
                        "initial_agent_state must be Ready, LoggedOut or NotReady(Reason), not \"{}\"",
                        s.get_ref()
                    ),
                );
                AgentState::Ready
            }
            Some(AgentState::NotReady(r)) if !reason_codes.iter().any(|c| *c == *r) => {
                ck.error(
                    Some(s.span()),
                    format!(
                        "initial_agent_state: reason \"{r}\" is not one of reason_codes ({})",
                        reason_codes.join(", ")
                    ),
                );
                AgentState::Ready
            }
            Some(state) => state,
        },
    };
    let over_capacity = match raw.over_capacity {
        None => OverCapacity::Reject,
        Some(o) => match o.get_ref().as_str() {
            "reject" => OverCapacity::Reject,
            "ring" => OverCapacity::Ring,
            other => {
                ck.error(
                    Some(o.span()),
                    format!("over_capacity must be \"reject\" or \"ring\", not \"{other}\""),
                );
                OverCapacity::Reject
            }
        },
    };
    DesktopSettings {
        agent_id: raw.agent_id.unwrap_or_else(|| "agent".to_owned()),
        initial_agent_state,
        reason_codes,
        dispositions: raw.dispositions.unwrap_or_else(|| {
            ["Resolved", "Callback", "Escalated"]
                .map(String::from)
                .to_vec()
        }),
        auto_answer: raw.auto_answer.unwrap_or(false),
        max_concurrent_calls: raw.max_concurrent_calls.unwrap_or(0),
        capacity: raw.capacity.unwrap_or_default(),
        over_capacity,
        wrap_up_seconds: raw.wrap_up_seconds,
        ring_timeout_seconds: raw.ring_timeout_seconds.unwrap_or(0),
        max_message_bytes: raw.max_message_bytes.unwrap_or(4096).clamp(1, 1 << 20) as usize,
    }
}

/// The default plugin directory: the folder of the running executable.
fn default_plugin_dirs() -> Vec<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .into_iter()
        .collect()
}

/// Expands `${VAR}` from the environment (unset variables expand to nothing).
fn expand_vars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let var = &rest[start + 2..start + 2 + end];
                out.push_str(&std::env::var(var).unwrap_or_default());
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The platform's file name for a library base name.
pub fn library_file_name(base: &str) -> String {
    if cfg!(target_os = "windows") {
        format!("{base}.dll")
    } else if cfg!(target_os = "macos") {
        format!("lib{base}.dylib")
    } else {
        format!("lib{base}.so")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Manifest, ManifestErrors> {
        parse(Path::new("dir/m.toml"), text)
    }

    fn one_error(text: &str) -> String {
        let e = check(text).expect_err("manifest should be refused");
        assert_eq!(e.0.len(), 1, "{e}");
        e.0[0].to_string()
    }

    const OK: &str = r#"
[host]
plugin_dir = "plugins"

[desktop]
agent_id = "a1"
initial_agent_state = "NotReady(Break)"

[[hosted_control]]
name = "Phone"
type = "connector"
library = "sim_connector"
version = "^0.1"
connection = "polling"
poll_interval_ms = 50
[hosted_control.settings]
calls_per_minute = 5
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = check(OK).unwrap();
        assert_eq!(m.host.plugin_dirs, vec![PathBuf::from("dir/plugins")]);
        assert_eq!(
            m.desktop.initial_agent_state,
            AgentState::NotReady("Break".into())
        );
        let hc = &m.hosted_controls[0];
        assert_eq!(hc.kind, ControlType::Connector);
        assert_eq!(hc.connection, ConnectionModel::Polling);
        assert_eq!(hc.poll_interval_ms, 50);
        assert!(hc.settings.contains("calls_per_minute = 5"));
        assert_eq!(hc.location.line, 12);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = one_error("[host]\nhot_reload = tru\n");
        assert!(e.starts_with("dir/m.toml:2:14: "), "{e}");
    }

    #[test]
    fn unknown_key_is_refused_at_its_line() {
        let e = one_error("[desktop]\nagent_id = \"a\"\ncolour = 3\n");
        assert!(e.starts_with("dir/m.toml:3:1: "), "{e}");
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn missing_key_is_named() {
        let e = one_error("[[hosted_control]]\nname = \"x\"\ntype = \"control\"\n");
        assert!(e.contains("missing field `library`"), "{e}");
        assert!(e.starts_with("dir/m.toml:1:"), "{e}");
    }

    #[test]
    fn duplicate_names_and_bad_semver_are_all_reported() {
        let text = r#"
[[hosted_control]]
name = "A"
type = "control"
library = "x"

[[hosted_control]]
name = "A"
type = "control"
library = "y"
version = "not-a-req"
"#;
        let e = check(text).unwrap_err();
        let all = e.to_string();
        assert_eq!(e.0.len(), 2, "{all}");
        assert!(
            all.contains(
                "dir/m.toml:8:8: duplicate hosted control name \"A\" (first defined on line 3)"
            ),
            "{all}"
        );
        assert!(
            all.contains("dir/m.toml:11:11: hosted control \"A\": bad version requirement"),
            "{all}"
        );
    }

    #[test]
    fn wrong_type_is_refused() {
        let e = one_error("[desktop]\nmax_concurrent_calls = \"two\"\n");
        assert!(e.starts_with("dir/m.toml:2:24: "), "{e}");
    }

    #[test]
    fn unknown_reason_in_initial_state() {
        let e = one_error("[desktop]\ninitial_agent_state = \"NotReady(Nap)\"\n");
        assert!(
            e.contains("reason \"Nap\" is not one of reason_codes"),
            "{e}"
        );
    }

    #[test]
    fn plugin_dir_list_and_absolute() {
        let m = check("[host]\nplugin_dir = [\"/abs\", \"rel\"]\n").unwrap();
        assert_eq!(
            m.host.plugin_dirs,
            vec![PathBuf::from("/abs"), PathBuf::from("dir/rel")]
        );
    }

    #[test]
    fn trust_and_privacy_keys() {
        let m = check("[host]\nallow_insecure_permissions = true\nlog_numbers = \"full\"\n[[hosted_control]]\nname = \"P\"\ntype = \"connector\"\nlibrary = \"x\"\nsha256 = \"AB01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01\"\n").unwrap();
        assert!(m.host.allow_insecure_permissions);
        assert_eq!(m.host.log_numbers, LogNumbers::Full);
        let hc = &m.hosted_controls[0];
        assert!(hc.allow_insecure_permissions);
        assert_eq!(
            hc.sha256.as_deref(),
            Some("ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01")
        );
        let d = check("").unwrap();
        assert!(!d.host.allow_insecure_permissions);
        assert_eq!(d.host.log_numbers, LogNumbers::Masked);
        let e = one_error("[host]\nlog_numbers = \"some\"\n");
        assert!(e.starts_with("dir/m.toml:2:15: log_numbers must be"), "{e}");
        let e = one_error("[[hosted_control]]\nname = \"P\"\ntype = \"control\"\nlibrary = \"x\"\nsha256 = \"abc\"\n");
        assert!(e.contains("sha256 must be 64 hex digits"), "{e}");
    }

    #[test]
    fn lookup_rules_are_checked() {
        let m = check(
            "[directory]\npath = \"c.db\"\ndefault_country_code = \"1\"\n\n[[lookup]]\nfield = \"data.account\"\nsearch = \"field.account\"\ndnis = \"+1800*\"\non_many = \"first\"\n",
        )
        .unwrap();
        assert_eq!(m.directory.unwrap().path, PathBuf::from("dir/c.db"));
        let r = &m.lookups[0];
        assert_eq!(r.field, LookupField::Data("account".into()));
        assert_eq!(r.search, LookupSearch::Field("account".into()));
        assert_eq!(r.on_many, LookupOutcome::First);
        assert!(r.applies("voice", cti_plugin_api::Direction::Inbound, "+18005550100"));
        assert!(!r.applies("voice", cti_plugin_api::Direction::Inbound, "+14255550100"));
        let e = one_error("[[lookup]]\nfield = \"caller_colour\"\n");
        assert!(
            e.starts_with("dir/m.toml:2:9: lookup 1: unknown field \"caller_colour\""),
            "{e}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("+1800*", "+18005550100"));
        assert!(glob("*", ""));
        assert!(glob("+1?00*", "+1800"));
        assert!(!glob("+1800", "+18005"));
        assert!(glob("*0100", "+18005550100"));
    }

    #[test]
    fn line_index_positions() {
        let idx = LineIndex::new("ab\ncd\n");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(3), (2, 1));
        assert_eq!(idx.position(4), (2, 2));
    }
}
