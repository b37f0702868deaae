//! Turns the test-only `fault-injection` feature into `cfg(shoalloc_fault)`,
//! the one switch the fault hooks are compiled under (see `src/fault.rs`).
//! `RUSTFLAGS="--cfg shoalloc_fault"` has the same effect without the feature.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_FAULT_INJECTION").is_some() {
        println!("cargo::rustc-cfg=shoalloc_fault");
    }
}
