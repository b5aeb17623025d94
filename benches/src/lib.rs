//! The harness behind CTI Host's benchmarks (`cargo bench -p cti-benches`)
//! and its load harness (`cargo run --release -p cti-benches --bin load`).
//!
//! # Layout
//! - [`rig`]: a real desktop (manifest → `app::start`) with one
//!   `bench-plugin` connector and N `bench-plugin` controls, in one of three
//!   [`Mode`]s: the cdylibs through `dlopen` (what `cti-host` does), the
//!   same plugin code statically linked from its rlib (the limit), or the
//!   controls as proxies to child processes speaking JSON over a pipe.
//! - [`measure`]: statistics (median, percentiles), RSS, per-thread CPU time.
//! - [`startup`]: loading one plugin, and `cti-host run` until it is ready.
//! - [`plot`]: the SVG plots of `docs/`.
//! - [`machine`]: what the figures were taken on.
//! - [`paths`]: where the built libraries and binaries are.
//!
//! Every comparison runs both sides in the same process, interleaved.

pub mod machine;
pub mod measure;
pub mod paths;
pub mod plot;
pub mod rig;
pub mod startup;
