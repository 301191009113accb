//! Fuzzes an MLS application message, as a member opens it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::message(data));
