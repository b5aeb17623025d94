//! The root module every plugin library exports.
//!
//! It is a prefix type: fields are only ever added after the last one of
//! 1.0 (marked `last_prefix_field`), so a 1.x library loads in a 1.y host for
//! y ≥ x. `export_plugin!` builds it; the host reads it with
//! `lib_header_from_path` + `LibHeader::init_root_module` (one module per
//! library, unlike `RootModule::load_from_file`, which caches one per type).

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr},
    StableAbi,
};

use crate::{
    ffi::{PluginError, PluginInfo},
    traits::{ConnectorBox, ControlBox, HostHandle},
};

/// Builds a connector from the host handle and the hosted control's
/// `settings` table (TOML text).
pub type NewConnectorFn =
    extern "C" fn(host: HostHandle, settings: RStr<'_>) -> RResult<ConnectorBox, PluginError>;

/// Builds a control from the host handle and the hosted control's
/// `settings` table (TOML text).
pub type NewControlFn =
    extern "C" fn(host: HostHandle, settings: RStr<'_>) -> RResult<ControlBox, PluginError>;

/// The root module of a CTI Host plugin library.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Describes the library.
    pub info: extern "C" fn() -> PluginInfo,
    /// Builds a connector; fails with `Unsupported` if the library has none.
    pub new_connector:
        extern "C" fn(host: HostHandle, settings: RStr<'_>) -> RResult<ConnectorBox, PluginError>,
    /// Builds a control; fails with `Unsupported` if the library has none.
    ///
    /// This is the last field of 1.0: later fields are appended after it and
    /// documented with the version that added them.
    #[sabi(last_prefix_field)]
    pub new_control:
        extern "C" fn(host: HostHandle, settings: RStr<'_>) -> RResult<ControlBox, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "cti_plugin";
    const NAME: &'static str = "cti_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
