//! Compiles `proto/maillon/v1/*.proto` with protox (pure Rust): no `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/maillon/v1/peer.proto",
        "proto/maillon/v1/client.proto",
        "proto/maillon/v1/bench.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // The descriptors themselves, for gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("maillon_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
