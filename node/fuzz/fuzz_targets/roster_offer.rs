//! Fuzzes a roster version as a peer offers it, checked against a genesis.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::roster_offer(data));
