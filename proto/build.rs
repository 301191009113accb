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
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
