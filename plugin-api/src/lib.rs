//! The stable plugin ABI of CTI Host, and the SDK for plugin authors.
//!
//! # Layout
//! - [`ffi`]: the `#[repr(C)]` data that crosses the boundary (calls,
//!   events, commands, errors, capabilities, desktop views).
//! - [`traits`]: the `#[sabi_trait]` objects — [`ConnectorApi`],
//!   [`ControlApi`] (implemented by plugins) and [`HostApi`] (by the host).
//! - [`root`]: the root module ([`PluginMod`]) each library exports.
//! - [`sdk`]: plain traits and [`export_plugin!`] for authors; start there.
//!
//! # Versions
//! Two layers: abi_stable checks the memory layout of everything reachable
//! from the root module when a library is loaded, and the host checks
//! [`API_VERSION`] (semver: same major, plugin minor ≤ host minor).
#![deny(missing_docs)]
#![deny(unsafe_code)]
// abi_stable 0.11's `sabi_trait` and `StableAbi` expansions define impls
// inside functions (rustc's `non_local_definitions` lint).
#![allow(non_local_definitions)]

pub mod ffi;
// The root-module and sabi_trait derives expand to `unsafe` impls; no
// hand-written `unsafe` lives in these modules.
#[allow(unsafe_code)]
pub mod root;
pub mod sdk;
#[allow(unsafe_code)]
pub mod traits;

#[doc(hidden)]
pub use abi_stable;

pub use ffi::*;
pub use root::{NewConnectorFn, NewControlFn, PluginMod, PluginModRef};
pub use traits::{
    ConnectorApi, ConnectorApi_TO, ConnectorBox, ControlApi, ControlApi_TO, ControlBox, HostApi,
    HostApi_TO, HostHandle,
};

/// The semver of this `cti-plugin-api` build. A plugin records the value it
/// was built against in its [`PluginInfo`].
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
