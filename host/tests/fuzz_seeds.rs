//! Replays the fuzz corpus kept in the repository (`fuzz/seeds/<target>`
//! and the crash reproducers in `fuzz/regressions/<target>`) through the
//! parsers on the stable toolchain, so CI catches a regression without
//! libFuzzer. See fuzz/README.md.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                let bytes = std::fs::read(&p).expect("read seed");
                out.push((p, bytes));
            }
        }
    }
    out
}

#[test]
fn manifest_seeds() {
    let all = inputs("manifest");
    assert!(!all.is_empty(), "fuzz/seeds/manifest is empty");
    for (p, bytes) in all {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let r = cti_host::manifest::parse(Path::new("seed.toml"), text);
            if let Err(e) = r {
                assert!(!e.0.is_empty(), "{}", p.display());
            }
        }
    }
}

#[test]
fn ctl_command_seeds() {
    let all = inputs("ctl_command");
    assert!(!all.is_empty());
    let mut parsed = 0;
    for (_, bytes) in all {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            parsed += usize::from(cti_host::ctl::parse_command(&v).is_ok());
            if let Some(inner) = v.get("command") {
                let _ = cti_host::ctl::parse_command(inner);
            }
        }
    }
    assert!(parsed >= 3, "the good seeds parse");
}

#[test]
fn elf_check_seeds() {
    let all = inputs("elf_check");
    assert!(!all.is_empty());
    for (p, bytes) in all {
        let r = cti_host::loader::check_object_file(&bytes);
        if p.file_name().is_some_and(|n| n == "tiny.so")
            && cfg!(all(target_os = "linux", target_arch = "x86_64"))
        {
            assert_eq!(r, Ok(()), "{}", p.display());
        }
    }
}
