//! Fuzzes a node.toml, as the node loads it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maillon_node::fuzzing::node_config(data));
