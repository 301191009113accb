//! Writes the MLS fixture and the seed corpora: `cargo run --manifest-path node/fuzz/Cargo.toml --example write_seeds`.

fn main() -> std::io::Result<()> {
    maillon_node::fuzzing::write_seeds(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
}
