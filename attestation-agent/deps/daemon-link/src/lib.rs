//! Link choices shared by the three daemons, so that on glibc each maps `libc.so.6` and
//! `ld.so` and no other shared library.
//!
//! Every shared library costs resident pages in every process that maps it, whether or not
//! it is called: the loader relocates it and runs its IFUNC resolvers, and the kernel's
//! fault-around maps 64 KiB around each page touched. For the three daemons `libm.so.6`
//! cost 300 to 590 KiB each and `libgcc_s.so.1` 80 KiB each (`bench idle_rss_mib`), for
//! one function of libm (`pow`, called by tokio's multi-thread scheduler to weigh its
//! poll-time average) and an unwinder that links statically as well.
//!
//! A binary takes these choices with `use daemon_link as _;`.

// `pow` must be defined where rustc links it into the executable, which needs `no_mangle`.
#![deny(unsafe_code)]

/// libm's `pow`, defined in the executable so the linker resolves tokio's call here and,
/// with `--as-needed`, records no dependency on `libm.so.6`. The implementation is the
/// `libm` crate's port of musl's (within 1 ulp, the same special cases as C99 Annex F).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
// SAFETY: this defines the C symbol `pow` with C's signature and C99 semantics, so every
// caller in the process that binds to it gets what libm's `pow` would give; nothing else in
// the executable defines it, and shared libraries keep their own libm since the executable
// does not export it.
#[allow(unsafe_code)]
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::pow;

    #[test]
    fn pow_gives_c99_results() {
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert_eq!(pow(9.0, 0.5), 3.0);
        assert_eq!(pow(0.5, -2.0), 4.0);
        assert_eq!(pow(f64::NAN, 0.0), 1.0);
        assert_eq!(pow(1.0, f64::NAN), 1.0);
        assert!(pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(pow(0.0, -1.0), f64::INFINITY);
        assert_eq!(pow(-0.0, -1.0), f64::NEG_INFINITY);
        assert_eq!(pow(0.9, f64::INFINITY), 0.0);
        assert_eq!(pow(10.0, 400.0), f64::INFINITY);
        // the shape of tokio's call: a factor just below 1 to a poll count
        let w = pow(0.999_985_688_305_186_9, 1_000.0);
        assert!((w - 0.985_790_129_711_572).abs() < 1e-15, "{w}");
    }
}
