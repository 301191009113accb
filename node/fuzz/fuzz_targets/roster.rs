//! Fuzzes a roster file, as a starting node verifies it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::roster(data));
