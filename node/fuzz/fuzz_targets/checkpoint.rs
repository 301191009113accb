//! Fuzzes a checkpoint note, as an auditor verifies it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::checkpoint(data));
