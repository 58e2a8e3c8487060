//! Generates the Rust types of `proto/dtask/v1/*.proto` with prost, using
//! the protoc binary vendored by `protoc-bin-vendored`.

use std::io;

const PROTOS: &[&str] = &["proto/dtask/v1/progress.proto", "proto/dtask/v1/saga.proto"];

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    config.compile_protos(PROTOS, &["proto"])
}
