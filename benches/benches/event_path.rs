//! Criterion benchmarks of the event path (`cargo bench -p cti-benches`).
//!
//! - `event_path/*`: connector → desktop → 3 controls through a real desktop,
//!   per event: the cdylibs through `dlopen`, the same code statically
//!   linked, and the controls out of process behind a JSON pipe (ack per
//!   event, ack per 64).
//! - `abi_call/*`: one `on_event` call on a control: through the ABI into
//!   the dlopen'ed cdylib, through the ABI into the static code, and a
//!   direct call of the plain Rust trait.
//! - `json/*`: what the pipe path pays per event before the pipe itself.
//!
//! Build them without running (CI): `cargo bench -p cti-benches --no-run`.
//! The load harness (`--bin load`) measures the same paths with medians of
//! repeated runs, plus latency, scale and start-up.

use std::{
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use abi_stable::std_types::{RArc, ROption, RString, RVec};
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use cti_benches::{
    paths,
    rig::{self, Mode, Rig},
};
use cti_host::{
    loader::{self, Library, ShadowDir},
    plugin::{HostCtx, PluginId},
};
use cti_plugin_api::{
    sdk::{Control, Host, NewControl, Settings},
    CallView, Capabilities, ConnectionModel, ConnectionState, ControlBox, DesktopEvent, Direction,
    EventKind, HostedInfo, KeyValue, Party, WorkItemView, WorkState,
};

fn event_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_path");
    // Flat sampling: every sample floods the same number of events, so a
    // disturbance (another process on this 2-core machine) spoils one
    // sample instead of tilting the regression of linear sampling.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    let paths = [
        ("abi_dlopen", Mode::Dlopen),
        ("static", Mode::Static),
        ("pipe_ack1", Mode::Pipe { batch: 1 }),
        ("pipe_ack64", Mode::Pipe { batch: 64 }),
    ];
    for (name, mode) in paths {
        let rig = match Rig::start(mode, 3) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("event_path/{name}: skipped: {e}");
                continue;
            }
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let f = rig.flood(iters, 0, false).expect("flood");
                Duration::from_nanos(f.elapsed_ns)
            });
        });
        rig.stop();
    }
    group.finish();
}

fn sample_event() -> DesktopEvent {
    let call = CallView {
        call_id: "bench-0".into(),
        connector: "Bench".into(),
        channel: "voice".into(),
        direction: Direction::Inbound,
        ani: "+15550100".into(),
        dnis: "+18005550100".into(),
        state: ConnectionState::Connected,
        parties: RVec::from(vec![Party {
            id: "+15550100".into(),
            state: ConnectionState::Connected,
        }]),
        allowed: Capabilities::NONE,
        muted: false,
        data: RVec::from(vec![KeyValue::new("queue", "sales")]),
        started_ms: 1_700_000_000_000,
        answered_ms: 1_700_000_001_000,
        work: WorkItemView {
            state: WorkState::ACTIVE,
            wrap_up_remaining_ms: 0,
            wrap_up_unlimited: false,
            disposition: RString::new(),
        },
        attrs: RVec::new(),
    };
    DesktopEvent {
        seq: 42,
        kind: EventKind::DIGITS_GENERATED,
        time_ms: 1_700_000_002_000,
        call: ROption::RSome(RArc::new(call)),
        agent: ROption::RNone,
        session: ROption::RNone,
        previous_state: ConnectionState::Connected,
        source: "Bench".into(),
        party: RString::new(),
        cause: RString::new(),
        text: "12345".into(),
        request_id: 0,
        attrs: RVec::new(),
    }
}

fn host_ctx() -> HostCtx {
    let (tx, _rx) = crossbeam_channel::bounded(16);
    // The receiver is dropped: a control that emits gets "shutting down".
    HostCtx::new(
        PluginId::Control(0),
        HostedInfo {
            name: "Control-0".into(),
            channel: RString::new(),
            connection: ConnectionModel::Instance,
            poll_interval_ms: 0,
            agent_id: "bench".into(),
        },
        tx,
        Arc::new(AtomicU64::new(1)),
    )
}

fn control_settings() -> String {
    format!("scoreboard = {}\nslot = 3\n", rig::board().address())
}

fn control(lib: &Library) -> ControlBox {
    cti_host::app::new_control(lib, host_ctx(), &control_settings()).expect("new_control")
}

fn abi_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("abi_call");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let ev = sample_event();
    match paths::library("bench_plugin") {
        Ok(path) => {
            let shadow = ShadowDir::create().expect("runtime dir");
            let lib = loader::load(&path, &shadow).expect("load");
            let mut ctl = control(&lib);
            group.bench_function("on_event_dlopen", |b| {
                b.iter(|| ctl.on_event(black_box(&ev)));
            });
            let lib = rig::static_library(&path).expect("static");
            let mut ctl = control(&lib);
            group.bench_function("on_event_static", |b| {
                b.iter(|| ctl.on_event(black_box(&ev)));
            });
        }
        Err(e) => eprintln!("abi_call: dlopen and static skipped: {e}"),
    }
    let handle = host_ctx().into_handle();
    let mut direct = bench_plugin::BenchControl::new(
        Host::from_handle(handle),
        Settings::from_toml(&control_settings()),
    )
    .expect("control");
    group.bench_function("on_event_direct", |b| {
        b.iter(|| direct.on_event(black_box(&ev)));
    });
    group.finish();
}

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let ev = sample_event();
    group.bench_function("event_to_json", |b| {
        b.iter(|| cti_plugin_api::sdk::json::event_to_json(black_box(&ev)));
    });
    let line = cti_plugin_api::sdk::json::event_to_json(&ev);
    group.bench_function("parse_value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&line)).expect("json"));
    });
    group.finish();
}

criterion_group!(benches, abi_call, json, event_path);
criterion_main!(benches);
