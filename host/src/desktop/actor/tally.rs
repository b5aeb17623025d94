//! Running tallies of the calls, so that the questions every event asks —
//! "what do this connector's other calls look like?" (allowed actions) and
//! "is there live work or wrap-up?" (agent state) — cost O(1) instead of a
//! walk over every call. The walks made each event O(calls), and
//! `refresh_siblings` O(calls²): 5.7 ms per event with 1,000 calls
//! (BENCHMARKS.md).
//!
//! Each call entry remembers what it contributes ([`Tally`]); after a change
//! to a call's connection state, work state or `cleared` flag, `recount`
//! moves the difference into the totals, and `uncount` takes a forgotten
//! call out. Debug builds check the totals against the full walk on every
//! use, so a change site that forgets `recount` fails the tests.

use abi_stable::std_types::RString;
use cti_plugin_api::{ConnectionState as S, Direction, WorkState};

use super::{CallEntry, DesktopActor};
use crate::desktop::call::Others;

/// What one call contributes (0 or 1 each), or the sum over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    connected: u32,
    held: u32,
    dialing: u32,
    live: u32,
    wrapping: u32,
}

impl Tally {
    /// The contribution of one call, as `others` and `has_live_work` count it.
    fn of(e: &CallEntry) -> Self {
        let v = &e.view;
        let on = !e.cleared;
        Self {
            connected: u32::from(on && v.state == S::Connected),
            held: u32::from(on && v.state == S::Held),
            dialing: u32::from(
                on && (v.state == S::Initiated
                    || (v.state == S::Alerting && v.direction == Direction::Outbound)),
            ),
            live: u32::from(
                on && matches!(
                    v.work.state,
                    WorkState::OFFERED | WorkState::ACCEPTED | WorkState::ACTIVE
                ),
            ),
            wrapping: u32::from(v.work.state == WorkState::WRAPPING),
        }
    }

    fn add(&mut self, o: Tally) {
        self.connected += o.connected;
        self.held += o.held;
        self.dialing += o.dialing;
        self.live += o.live;
        self.wrapping += o.wrapping;
    }

    fn sub(&mut self, o: Tally) {
        self.connected -= o.connected;
        self.held -= o.held;
        self.dialing -= o.dialing;
        self.live -= o.live;
        self.wrapping -= o.wrapping;
    }
}

/// The totals: per connector and over every call.
#[derive(Debug, Default)]
pub(super) struct Tallies {
    per_connector: Vec<Tally>,
    total: Tally,
}

impl Tallies {
    fn connector(&mut self, i: usize) -> &mut Tally {
        if self.per_connector.len() <= i {
            self.per_connector.resize(i + 1, Tally::default());
        }
        &mut self.per_connector[i]
    }
}

impl DesktopActor {
    /// Brings the tallies up to date after call `id` changed (or was added).
    pub(super) fn recount(&mut self, id: &RString) {
        let Some(e) = self.calls.get_mut(id) else {
            return;
        };
        let now = Tally::of(e);
        let was = std::mem::replace(&mut e.counted, now);
        if was != now {
            let t = &mut self.tallies;
            t.total.sub(was);
            t.total.add(now);
            let c = t.connector(e.connector);
            c.sub(was);
            c.add(now);
        }
    }

    /// Takes a call that was removed from `calls` out of the tallies.
    pub(super) fn uncount(&mut self, e: &CallEntry) {
        let t = &mut self.tallies;
        t.total.sub(e.counted);
        t.connector(e.connector).sub(e.counted);
    }

    /// What the connector's calls other than `except` look like.
    pub(super) fn others(&self, connector: usize, except: &RString) -> Others {
        let mut t = self
            .tallies
            .per_connector
            .get(connector)
            .copied()
            .unwrap_or_default();
        if let Some(e) = self.calls.get(except) {
            if e.connector == connector {
                t.sub(e.counted);
            }
        }
        let o = Others {
            connected: t.connected > 0,
            held: t.held > 0,
            dialing: t.dialing > 0,
        };
        debug_assert_eq!(o, self.others_by_walk(connector, except), "tally drift");
        o
    }

    /// (some live work, some work in wrap-up).
    pub(super) fn has_live_work(&self) -> (bool, bool) {
        let r = (self.tallies.total.live > 0, self.tallies.total.wrapping > 0);
        debug_assert_eq!(r, self.live_work_by_walk(), "tally drift");
        r
    }

    /// `others` by walking every call (the reference for the debug check).
    fn others_by_walk(&self, connector: usize, except: &RString) -> Others {
        let mut o = Others::default();
        for (k, e) in &self.calls {
            if e.connector != connector || k == except || e.cleared {
                continue;
            }
            match e.view.state {
                S::Connected => o.connected = true,
                S::Held => o.held = true,
                S::Initiated => o.dialing = true,
                S::Alerting if e.view.direction == Direction::Outbound => o.dialing = true,
                _ => {}
            }
        }
        o
    }

    /// `has_live_work` by walking every call (the reference for the debug check).
    fn live_work_by_walk(&self) -> (bool, bool) {
        let mut live = false;
        let mut wrapping = false;
        for e in self.calls.values() {
            // Live until the call clears, even after the agent's own
            // connection is gone (ConnectionCleared comes before CallCleared).
            if !e.cleared
                && matches!(
                    e.view.work.state,
                    WorkState::OFFERED | WorkState::ACCEPTED | WorkState::ACTIVE
                )
            {
                live = true;
            }
            if e.view.work.state == WorkState::WRAPPING {
                wrapping = true;
            }
        }
        (live, wrapping)
    }
}
