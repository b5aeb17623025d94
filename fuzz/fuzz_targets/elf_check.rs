//! The loader's ELF check, which reads a plugin file before dlopen: any
//! bytes must be accepted or refused with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(reason) = cti_host::loader::check_object_file(data) {
        assert!(!reason.is_empty());
    }
});
