//! Fuzzes a signed read request, as the owner checks it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::read_request(data));
