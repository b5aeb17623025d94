//! `cti-host`: the CTI Host binary. All logic is in the library:
//! - `cli`: command line (run, check, inspect, ctl)
//! - `manifest`: the TOML manifest, checked, with file:line:column errors
//! - `loader`: finding, checking and loading plugin libraries
//! - `plugin`: the host context and the worker thread of each plugin instance
//! - `desktop`: the desktop manager actor (calls, work items, agent state)
//! - `app`: putting a desktop together from a manifest
//! - `ctl`: the local control socket and its client

fn main() -> std::process::ExitCode {
    cti_host::cli::main()
}
