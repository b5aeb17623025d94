//! Where the built plugin libraries and binaries are.
//!
//! Benchmarks and the load harness run from `target/<profile>/` (binaries)
//! or `target/<profile>/deps/` (criterion benches); the libraries and
//! `cti-host` sit in `target/<profile>/` after a `cargo build`.

use std::path::{Path, PathBuf};

/// `target/<profile>`: the folder of the running executable, or its parent
/// when it runs from `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe has a folder").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir
    }
}

/// The newest of `lib<base>.so` in `target/<profile>` and its `deps/`.
///
/// # Errors
/// When neither exists, with the command that builds it.
pub fn library(base: &str) -> Result<PathBuf, String> {
    let dir = profile_dir();
    let name = format!("lib{base}.so");
    let mut found: Vec<PathBuf> = [dir.join(&name), dir.join("deps").join(&name)]
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    found.pop().ok_or_else(|| {
        format!(
            "{} is missing: build it first (cargo build --release -p {})",
            dir.join(&name).display(),
            base.replace('_', "-")
        )
    })
}

/// A binary of the workspace in `target/<profile>`.
///
/// # Errors
/// When it is missing, with the command that builds it.
pub fn binary(name: &str, package: &str) -> Result<PathBuf, String> {
    let p = profile_dir().join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: build it first (cargo build --release -p {package})",
            p.display()
        ))
    }
}

/// The child program of the JSON-pipe path.
///
/// # Errors
/// When it is missing.
pub fn pipe_child() -> Result<PathBuf, String> {
    binary("cti-bench-child", "cti-benches")
}

/// The workspace root (for `config/desktop.toml`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}
