//! Fuzzes an MLS Welcome, as the invited member joins from it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::welcome(data));
