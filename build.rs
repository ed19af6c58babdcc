// Tells the integration tests which target they were built for, so that they can run the
// binary through the same QEMU runner as themselves when cross-testing (tests/common/mod.rs).
fn main() {
    println!(
        "cargo:rustc-env=PINSIGHT_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
