//! Fuzzes an audit log file, as the node opens it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::audit_log(data));
