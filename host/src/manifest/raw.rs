//! Serde structs mirroring the manifest's TOML, with spans kept where a
//! later check must point at a line. Unknown keys are errors.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    #[serde(default)]
    pub host: RawHost,
    #[serde(default)]
    pub desktop: RawDesktop,
    #[serde(default)]
    pub hosted_control: Vec<RawHostedControl>,
    pub directory: Option<RawDirectory>,
    #[serde(default)]
    pub lookup: Vec<RawLookup>,
}

/// `[directory]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirectory {
    pub path: String,
    pub default_country_code: Option<String>,
}

/// `[[lookup]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    pub name: Option<String>,
    pub channel: Option<String>,
    pub direction: Option<Spanned<String>>,
    pub dnis: Option<String>,
    pub field: Spanned<String>,
    pub search: Option<Spanned<String>>,
    pub on_none: Option<Spanned<String>>,
    pub on_one: Option<Spanned<String>>,
    pub on_many: Option<Spanned<String>>,
}

/// One directory or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `[host]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub plugin_dir: Option<Spanned<OneOrMany>>,
    pub hot_reload: Option<bool>,
    pub log_format: Option<Spanned<String>>,
    pub ctl_socket: Option<String>,
    pub execute_timeout_ms: Option<u64>,
    pub control_queue: Option<Spanned<u64>>,
    pub lag_timeout_ms: Option<u64>,
    pub inbox_capacity: Option<Spanned<u64>>,
    pub allow_insecure_permissions: Option<bool>,
    pub log_numbers: Option<Spanned<String>>,
    pub restart_limit: Option<u32>,
    pub restart_window_secs: Option<u64>,
    pub restart_backoff_ms: Option<u64>,
    pub reload_debounce_ms: Option<u64>,
}

/// `[desktop]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDesktop {
    pub agent_id: Option<String>,
    pub initial_agent_state: Option<Spanned<String>>,
    pub reason_codes: Option<Vec<String>>,
    pub dispositions: Option<Vec<String>>,
    pub auto_answer: Option<bool>,
    pub max_concurrent_calls: Option<u32>,
    pub wrap_up_seconds: Option<u64>,
    pub ring_timeout_seconds: Option<u64>,
    pub max_message_bytes: Option<u64>,
    pub over_capacity: Option<Spanned<String>>,
    pub capacity: Option<std::collections::BTreeMap<String, u32>>,
}

/// `[[hosted_control]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostedControl {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub library: Spanned<String>,
    pub version: Option<Spanned<String>>,
    pub display_group: Option<String>,
    pub connection: Option<Spanned<String>>,
    pub poll_interval_ms: Option<Spanned<u64>>,
    pub channel: Option<String>,
    pub sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub settings: toml::Table,
    #[serde(default)]
    pub intercept: Vec<RawIntercept>,
}

/// `[[hosted_control.intercept]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntercept {
    pub command: Spanned<String>,
    pub phase: Spanned<String>,
    pub priority: Spanned<i64>,
}
