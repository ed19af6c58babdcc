// Facts about the build that the binary reports (`pinsight --version`) and the tests read:
// - PINSIGHT_BUILD_TARGET: the target triple, so that the integration tests run the binary
//   through the same QEMU runner as themselves when cross-testing (tests/common/mod.rs);
// - PINSIGHT_GIT_REVISION: the commit built, with "-modified" when the work tree had changes;
//   taken from the environment variable of that name when set (a build from a source tarball),
//   else from git, else "unknown";
// - PINSIGHT_COMMIT_DATE: that commit's date (YYYY-MM-DD) for the manual pages; likewise from
//   the environment, else git, else empty;
// - PINSIGHT_BUNDLED_BACKBONE_SHA256: the SHA-256 of the bundled int8 backbone, as its
//   SHA256SUMS lists it;
// - the cfg `arm_neon`: a 32-bit ARM build whose code may use NEON (`-C target-cpu=` a CPU with
//   NEON, as .cargo/config.toml builds armv7, or `-C target-feature=+neon`). Rust keeps ARM's
//   `neon` feature unstable, so `cfg(target_feature = "neon")` is never set there.
use std::path::Path;
use std::process::Command;

fn main() {
    println!(
        "cargo:rustc-env=PINSIGHT_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap()
    );
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PINSIGHT_GIT_REVISION");
    let revision = std::env::var("PINSIGHT_GIT_REVISION")
        .ok()
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PINSIGHT_GIT_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=PINSIGHT_COMMIT_DATE");
    let date = std::env::var("PINSIGHT_COMMIT_DATE")
        .ok()
        .or_else(|| git(&["log", "-1", "--format=%cs"]))
        .unwrap_or_default();
    println!("cargo:rustc-env=PINSIGHT_COMMIT_DATE={date}");

    let sums = Path::new("models/efficientnet-lite0/SHA256SUMS");
    println!("cargo:rerun-if-changed={}", sums.display());
    let listing = std::fs::read_to_string(sums).expect("models/efficientnet-lite0/SHA256SUMS");
    let sha256 = listing
        .lines()
        .find_map(|line| line.strip_suffix("  backbone-int8.onnx"))
        .expect("SHA256SUMS lists backbone-int8.onnx");
    println!("cargo:rustc-env=PINSIGHT_BUNDLED_BACKBONE_SHA256={sha256}");

    println!("cargo::rustc-check-cfg=cfg(arm_neon)");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("arm") && arm_neon_flags() {
        println!("cargo:rustc-cfg=arm_neon");
    }
}

/// Whether the compiler flags give a 32-bit ARM build NEON: a `target-cpu` that has it (every
/// Cortex-A of ARMv7-A but the A5 and A9, where NEON is optional) or `+neon`.
fn arm_neon_flags() -> bool {
    const NEON_CPUS: [&str; 10] = [
        "cortex-a7",
        "cortex-a8",
        "cortex-a12",
        "cortex-a15",
        "cortex-a17",
        "cortex-a53",
        "cortex-a57",
        "cortex-a72",
        "cortex-a73",
        "cortex-a76",
    ];
    // `-C target-cpu=X` and `-Ctarget-cpu=X` alike, one flag a word.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS")
        .unwrap_or_default()
        .replace('\x1f', " ")
        .replace("-C ", "-C");
    let values = |name: &str| {
        let prefix = format!("-C{name}=");
        flags
            .split(' ')
            .filter_map(|word| word.strip_prefix(&prefix).map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let cpu_has_neon = values("target-cpu")
        .last()
        .is_some_and(|cpu| NEON_CPUS.contains(&cpu.as_str()));
    let plus_neon = values("target-feature")
        .iter()
        .flat_map(|features| features.split(','))
        .any(|feature| feature == "+neon");
    cpu_has_neon || plus_neon
}

/// The checked-out commit (12 hex digits), and whether tracked files differ from it. Asks to be
/// run again when the commit or the index changes.
fn git_revision() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    for file in ["HEAD", "index"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &head])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    let modified = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    Some(if modified {
        format!("{commit}-modified")
    } else {
        commit
    })
}

/// What `git ARGS` prints, trimmed, when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
