//! Fixtures of the cross-crate journeys (`tests/it/`): the deployment files read as an engine
//! would read them, and run without one.

pub mod compose;
pub mod dockerfile;
pub mod sidecar;

use std::path::PathBuf;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The directory holding this build's `sidecar` and `callout` binaries: `cargo test --workspace`
/// builds them (their packages have integration tests) next to this test's `deps/` directory.
/// Building them from here would run a second cargo with another feature set, relinking the
/// binaries other tests are running; so a missing one is an error that says what to run.
pub fn workspace_bins() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()))
        .to_owned();
    for bin in ["sidecar", "callout"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: run these tests with `cargo test --workspace` (it builds the binaries), \
             or `cargo build -p sidecar -p callout -p broker-auth-examples` first",
            dir.join(bin).display()
        );
    }
    dir
}
