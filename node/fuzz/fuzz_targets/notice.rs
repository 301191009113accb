//! Fuzzes a peer's notice (référent, break-glass, closure, erasure), as the member receives it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::notice(data));
