//! Build facts for `build_info()`: the cargo profile, rustc and pyo3 versions, the git revision.

use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    // OUT_DIR is target/<profile>/build/<pkg>-<hash>/out: the profile is the 4th ancestor's name
    // (cargo's PROFILE variable only says "debug" or "release", not "pyext").
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    let profile = Path::new(&out_dir)
        .ancestors()
        .nth(3)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    let git = run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let pyo3 = std::env::var("DEP_PYTHON_PYO3_VERSION").unwrap_or_else(|_| "0.30.1".into());
    println!("cargo:rustc-env=SHMTEL_BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=SHMTEL_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=SHMTEL_GIT_SHA={git}");
    println!("cargo:rustc-env=SHMTEL_PYO3_VERSION={pyo3}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../.git/HEAD");
}
