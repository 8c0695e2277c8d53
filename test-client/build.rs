//! Compiles the arena sample's payloads (`examples/arena/proto/arena.proto`)
//! with protox (pure Rust, no system `protoc`), the way `proto/build.rs`
//! compiles the client contract. The client reads the `.proto` the arena
//! ships rather than depending on the arena crate: it must speak to any
//! arena server over the wire, not link one in.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../examples/arena/proto";
    let file = "../examples/arena/proto/arena.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], [dir])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
