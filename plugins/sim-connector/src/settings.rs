//! The hosted control's `settings` table.

use std::collections::BTreeMap;

use cti_plugin_api::sdk::prelude::*;
use serde::Deserialize;

/// The highest `calls_per_minute` accepted (1 000 calls a second).
pub const MAX_CALLS_PER_MINUTE: f64 = 60_000.0;

/// The rate of random inbound calls when `calls_per_minute` is not given
/// (and no scenario is set).
pub const DEFAULT_CALLS_PER_MINUTE: f64 = 20.0;

/// Settings of the simulated phone system. Every key is optional.
///
/// ```toml
/// calls_per_minute = 6
/// talk_time_secs = [10, 30]
/// call_data = { queue = "Sales", language = "en" }
/// # scenario = "config/scenarios/busy-morning.toml"   # scripted calls instead
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSettings {
    /// Mean rate of random inbound calls after the first (Poisson
    /// arrivals); 0 = none after the first. When absent: 20, or no random
    /// calls at all when a `scenario` is set (see [`Self::random_arrivals`]).
    pub calls_per_minute: Option<f64>,
    /// The first inbound call arrives this many milliseconds after start,
    /// whatever the rate (so a demo shows a call at once).
    pub first_call_after_ms: u64,
    /// Stop generating inbound calls after this many; 0 = unlimited.
    pub max_calls: u64,
    /// Calling numbers are this prefix followed by 4 random digits.
    pub ani_prefix: String,
    /// The called number of inbound calls.
    pub dnis: String,
    /// The agent's extension (ANI of outbound calls, party of the agent's
    /// own connection).
    pub agent_extension: String,
    /// `[min, max]` seconds after a call is established before the far end
    /// hangs up (uniformly drawn); `[0, 0]` = the far end never hangs up.
    pub talk_time_secs: [f64; 2],
    /// The caller abandons an inbound call still ringing after this many
    /// seconds; 0 = never.
    pub abandon_after_secs: f64,
    /// An outbound call's far end starts ringing after this many ms.
    pub outbound_ring_ms: u64,
    /// It answers this many ms after it started ringing.
    pub outbound_answer_ms: u64,
    /// Seed of the random generator (reproducible numbers and timings).
    pub seed: Option<u64>,
    /// Call data attached to every inbound call.
    pub call_data: BTreeMap<String, String>,
    /// A scenario file (TOML, see [`crate::scenario`]) of timed steps:
    /// inbound and outbound calls, far-end hang-ups, failures, forced agent
    /// states. A relative path starts at the host's current directory. With
    /// a scenario, random inbound calls are off unless `calls_per_minute` is
    /// given too.
    pub scenario: Option<String>,
    /// The SDK's test mode (`cti_test_mode = true`, set by `cti-host
    /// verify`; see [`Self::enter_test_mode`]). Not a settings key.
    #[serde(skip)]
    pub test_mode: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            calls_per_minute: None,
            first_call_after_ms: 300,
            max_calls: 0,
            ani_prefix: "+1425555".to_owned(),
            dnis: "+18005550100".to_owned(),
            agent_extension: "1001".to_owned(),
            talk_time_secs: [20.0, 60.0],
            abandon_after_secs: 0.0,
            outbound_ring_ms: 300,
            outbound_answer_ms: 700,
            seed: None,
            call_data: BTreeMap::from([("queue".to_owned(), "Support".to_owned())]),
            scenario: None,
            test_mode: false,
        }
    }
}

impl SimSettings {
    /// Parses and validates the settings table.
    ///
    /// # Errors
    /// `BadSettings` naming the key and the problem.
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        let mut parsed: Self = settings.parse()?;
        if settings.test_mode() {
            parsed.enter_test_mode();
        }
        parsed.validate()?;
        Ok(parsed)
    }

    /// The SDK's test mode, as `cti_plugin_api::sdk::TEST_MODE_KEY`
    /// describes it: one inbound call at once (within 200 ms), a second
    /// once the first no longer rings, no more; no random or scripted calls;
    /// the far end never hangs up or abandons; an outbound call rings after
    /// 100 ms and is answered 300 ms later.
    pub fn enter_test_mode(&mut self) {
        self.test_mode = true;
        self.first_call_after_ms = self.first_call_after_ms.min(200);
        self.calls_per_minute = Some(0.0);
        self.max_calls = 2;
        self.talk_time_secs = [0.0, 0.0];
        self.abandon_after_secs = 0.0;
        self.outbound_ring_ms = 100;
        self.outbound_answer_ms = 300;
        self.scenario = None;
    }

    /// True when random inbound calls are generated: always without a
    /// scenario, and with one only when `calls_per_minute` is given.
    pub fn random_arrivals(&self) -> bool {
        self.scenario.is_none() || self.calls_per_minute.is_some()
    }

    /// The mean rate of random inbound calls after the first.
    pub fn arrival_rate(&self) -> f64 {
        self.calls_per_minute.unwrap_or(DEFAULT_CALLS_PER_MINUTE)
    }

    /// Checks values serde cannot check.
    ///
    /// # Errors
    /// `BadSettings` naming the key and the problem.
    pub fn validate(&self) -> Result<(), PluginError> {
        let bad = |msg: &str| {
            Err(PluginError::new(
                ErrorKind::BAD_SETTINGS,
                format!("settings: {msg}"),
            ))
        };
        let seconds_ok = |s: f64| s.is_finite() && s >= 0.0;
        let rate = self.arrival_rate();
        if !(seconds_ok(rate) && rate <= MAX_CALLS_PER_MINUTE) {
            return bad(&format!(
                "calls_per_minute must be between 0 and {MAX_CALLS_PER_MINUTE}"
            ));
        }
        let [min, max] = self.talk_time_secs;
        if !(seconds_ok(min) && seconds_ok(max)) {
            return bad("talk_time_secs must hold two non-negative numbers");
        }
        if min > max {
            return bad("talk_time_secs: min must not exceed max");
        }
        if !seconds_ok(self.abandon_after_secs) {
            return bad("abandon_after_secs must be a non-negative number");
        }
        if self.agent_extension.trim().is_empty() {
            return bad("agent_extension must not be empty");
        }
        if self.scenario.as_ref().is_some_and(|p| p.trim().is_empty()) {
            return bad("scenario must be the path of a scenario file");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SimSettings, PluginError> {
        SimSettings::from_settings(&Settings::from_toml(text))
    }

    #[test]
    fn empty_table_gives_defaults() {
        assert_eq!(parse("").ok(), Some(SimSettings::default()));
    }

    #[test]
    fn integers_are_accepted_for_floats() {
        let s = parse("calls_per_minute = 6\ntalk_time_secs = [1, 2]\nseed = 7")
            .expect("valid settings");
        assert_eq!(s.calls_per_minute, Some(6.0));
        assert_eq!(s.arrival_rate(), 6.0);
        assert_eq!(s.talk_time_secs, [1.0, 2.0]);
        assert_eq!(s.seed, Some(7));
    }

    #[test]
    fn a_scenario_turns_random_calls_off_unless_a_rate_is_given() {
        let plain = parse("").expect("valid settings");
        assert!(plain.random_arrivals());
        assert_eq!(plain.arrival_rate(), DEFAULT_CALLS_PER_MINUTE);
        let scripted = parse("scenario = \"s.toml\"").expect("valid settings");
        assert_eq!(scripted.scenario.as_deref(), Some("s.toml"));
        assert!(!scripted.random_arrivals());
        let both = parse("scenario = \"s.toml\"\ncalls_per_minute = 2").expect("valid settings");
        assert!(both.random_arrivals());
        assert_eq!(both.arrival_rate(), 2.0);
    }

    #[test]
    fn call_data_replaces_the_default() {
        let s = parse("call_data = { lang = \"fr\" }").expect("valid settings");
        assert_eq!(s.call_data.len(), 1);
        assert_eq!(s.call_data.get("lang").map(String::as_str), Some("fr"));
    }

    #[test]
    fn bad_settings_are_refused() {
        for text in [
            "unknown_key = 1",
            "calls_per_minute = -1",
            "calls_per_minute = \"many\"",
            "calls_per_minute = 1e9",
            "talk_time_secs = [5, 1]",
            "talk_time_secs = [1]",
            "abandon_after_secs = -2",
            "agent_extension = \"\"",
            "scenario = \" \"",
            "scenario = 3",
        ] {
            let err = parse(text).expect_err(text);
            assert_eq!(err.kind, ErrorKind::BAD_SETTINGS, "{text}");
        }
    }
}
