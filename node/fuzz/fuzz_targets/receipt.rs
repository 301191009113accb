//! Fuzzes an owner's receipt, as the reader verifies it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::receipt(data));
