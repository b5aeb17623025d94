//! `cti-host verify LIBRARY`: the conformance suite for connector libraries.

use std::{path::Path, process::ExitCode};

/// Runs the suite; prints a pass/fail table; exit 0 only when all pass.
pub fn main(library: &Path, settings: &str, json: bool) -> ExitCode {
    let _ = (library, settings, json);
    eprintln!("verify: not implemented yet");
    ExitCode::from(1)
}
