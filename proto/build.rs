//! Compiles `proto/cyxwiz/*.proto` with protox (pure Rust, no system `protoc`), generates the
//! prost messages and tonic clients/servers, and writes the encoded descriptor set to
//! `$OUT_DIR/cyxwiz_descriptor.bin` for `FILE_DESCRIPTOR_SET`.

use std::path::PathBuf;

use prost::Message as _;

const PROTO_DIR: &str = "proto";
const FILES: &[&str] = &[
    "proto/cyxwiz/common.proto",
    "proto/cyxwiz/node.proto",
    "proto/cyxwiz/execution.proto",
    "proto/cyxwiz/reservation.proto",
    "proto/cyxwiz/inference.proto",
    "proto/cyxwiz/deployment.proto",
    "proto/cyxwiz/daemon.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }

    // protox keeps source info, so proto comments become doc comments.
    let fds = protox::compile(FILES, [PROTO_DIR])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("cyxwiz_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
