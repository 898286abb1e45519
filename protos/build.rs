//! Generates the protobuf messages and async ttRPC clients/servers from `protos/*.proto` with
//! pure-Rust codegen (no `protoc`). The generated files carry inner attributes and
//! inner doc comments, which `include!` cannot take, so they are stripped here and set on the enclosing modules instead.

use std::{fs, io, path::Path};

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

const PROTOS: [&str; 3] = ["attestation-agent", "api", "keyprovider"];

fn main() -> io::Result<()> {
    let out_dir = std::env::var("OUT_DIR").map_err(io::Error::other)?;
    let inputs: Vec<String> = PROTOS.iter().map(|p| format!("protos/{p}.proto")).collect();
    for input in &inputs {
        println!("cargo:rerun-if-changed={input}");
    }
    Codegen::new()
        .out_dir(&out_dir)
        .inputs(&inputs)
        .include("protos")
        .rust_protobuf()
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()?;

    for entry in fs::read_dir(&out_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            strip_inner_attributes(&path)?;
        }
    }
    Ok(())
}

fn strip_inner_attributes(path: &Path) -> io::Result<()> {
    let text = fs::read_to_string(path)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("#![") || line.starts_with("//!"))
        })
        .collect();
    fs::write(path, kept.join("\n"))
}
