//! CTI Host: loads connector and control plugins through a stable ABI and
//! runs the desktop manager between them.
//!
//! # Layout
//! - [`cli`]: the command line (`run`, `check`, `inspect`, `ctl`).
//! - [`manifest`]: the TOML manifest, checked, every error with file:line:column.
//! - [`loader`]: resolving, checking (ELF, ABI layout, semver) and loading libraries.
//! - [`plugin`]: the host context given to plugins, and each instance's worker thread.
//! - [`desktop`]: the desktop manager actor: calls, work items, agent state, fan-out.
//! - [`app`]: building a running desktop from a manifest.
//! - [`reload`]: watching plugin files and loading changed ones for a hot swap.
//! - [`replay`]: driving the desktop manager with a recording (`cti-host replay`).
//! - [`ctl`]: the local control socket (`cti-host ctl`) and its client.
//! - [`verify`]: the conformance suite for connector libraries (`cti-host verify`).
//! - [`privacy`]: callers' numbers masked in logs (`[host] log_numbers`).
#![deny(unsafe_code)]
// abi_stable's `sabi_trait` impls expand to definitions inside functions.
#![allow(non_local_definitions)]

pub mod app;
pub mod cli;
pub mod ctl;
pub mod desktop;
pub mod directory;
// The one place with `unsafe`: loading libraries (each block has a SAFETY note).
#[allow(unsafe_code)]
pub mod loader;
pub mod manifest;
pub mod plugin;
pub mod privacy;
pub mod reload;
pub mod replay;
pub mod verify;
