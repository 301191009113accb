//! Fuzzes an MLS commit, as a member applies it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::commit(data));
