//! Compiles `proto/arena.proto` with protox (pure Rust), so building the
//! arena needs no system `protoc`: the same recipe a studio copies for its
//! own payloads.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/arena.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
