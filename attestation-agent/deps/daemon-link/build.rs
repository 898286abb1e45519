//! On glibc, links GCC's unwinder statically (`libgcc_eh.a`, as `-static-libgcc` does for C)
//! so that, with the `--as-needed` rustc passes, the daemons do not map `libgcc_s.so.1`.
//! musl targets already link their unwinder statically.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-lib=static:-bundle=gcc_eh");
    }
}
