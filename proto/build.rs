//! Compiles the .proto files with protox (pure Rust), so building gamemesh
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/client.proto", "proto/internal.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        // Bodies are relayed and cached, never edited: `Bytes` lets them
        // move between buffers without a copy.
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
