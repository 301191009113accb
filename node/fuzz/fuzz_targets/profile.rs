//! Fuzzes a client profile file, as the CLI reads it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::profile(data));
