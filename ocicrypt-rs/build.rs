//! Generates the gRPC `keyprovider.KeyProviderService` client and server (feature
//! `keywrap-keyprovider-grpc`) from the workspace's `protos/protos/keyprovider.proto` with
//! pure-Rust tools: protox parses the .proto, tonic-prost-build writes the code. No protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "keywrap-keyprovider-grpc")]
    {
        let proto = "../protos/protos/keyprovider.proto";
        println!("cargo:rerun-if-changed={proto}");
        let fds = protox::compile([proto], ["../protos/protos"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
