//! Turns features into the cfgs the code is compiled under:
//! - `fault-injection` → `cfg(shoalloc_fault)`, the one switch the fault hooks
//!   are compiled under (see `src/fault.rs`); `RUSTFLAGS="--cfg
//!   shoalloc_fault"` has the same effect without the feature;
//! - `initial-exec-tls`, on Linux on x86-64 and aarch64 and not under Miri →
//!   `cfg(shoalloc_initial_exec_tls)`, the initial-exec thread slot of
//!   `src/shoal/thread.rs` (elsewhere the feature changes nothing).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let set = |var: &str| std::env::var_os(var).is_some();
    if set("CARGO_FEATURE_FAULT_INJECTION") {
        println!("cargo::rustc-cfg=shoalloc_fault");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if set("CARGO_FEATURE_INITIAL_EXEC_TLS")
        && os == "linux"
        && (arch == "x86_64" || arch == "aarch64")
        && !set("CARGO_CFG_MIRI")
    {
        println!("cargo::rustc-cfg=shoalloc_initial_exec_tls");
    }
}
