//! The decision core stays pure: no broker, runtime, store, HTTP or NATS client crate in its
//! normal dependency tree, whatever features are on.

use std::process::Command;

#[test]
fn the_core_depends_on_no_io_crate() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "broker-auth",
            "-e",
            "normal",
            "--all-features",
        ])
        .args(["--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // A tree that failed to list anything would pass the check below vacuously.
    assert!(crates.contains(&"regorus"), "{tree}");
    for forbidden in ["rmqtt", "tokio", "sled", "warp", "hyper", "async-nats"] {
        assert!(
            !crates.contains(&forbidden),
            "broker-auth depends on {forbidden}:\n{tree}"
        );
    }
}
