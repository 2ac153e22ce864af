//! A first `serve` on a new store leads somewhere: it makes one admin API key, writes it to
//! `DATA_DIR/admin.key` (0600) and logs where it is, never the key; a restart or a bootstrapped
//! store makes none.

use std::os::unix::fs::PermissionsExt;

use reqwest::blocking::Client;

use super::server::{Server, bootstrap};

fn identities_status(server: &Server, key: &str) -> u16 {
    Client::new()
        .get(server.url("/identity"))
        .bearer_auth(key)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_new_store_gets_one_admin_key_in_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--mqtt-listen", "off"]);
    let file = data.join("admin.key");
    let key = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(key.starts_with("ak_"), "{key}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is private");
    assert_eq!(identities_status(&server, &key), 200, "the key works");
    assert_eq!(identities_status(&server, "ak_nope"), 401);
    let log = server.log();
    assert!(
        log.contains(file.to_str().unwrap()),
        "the log says where:\n{log}"
    );
    assert!(!log.contains(&key), "the log never holds the key");

    // A restart finds the key in the store: no new one, the file unchanged.
    server.kill9();
    let server = Server::start(&data, &["--mqtt-listen", "off"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    assert!(
        !server.log().contains("no admin API key"),
        "{}",
        server.log()
    );
    assert_eq!(identities_status(&server, &key), 200);
}

#[test]
fn a_bootstrapped_store_gets_no_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = bootstrap(&data);
    let server = Server::start(&data, &["--mqtt-listen", "off"]);
    assert!(!data.join("admin.key").exists());
    assert_eq!(identities_status(&server, &admin), 200);
}

/// `sidecar healthcheck` (the image's HEALTHCHECK) for an address.
fn healthcheck(listen: &str) -> std::process::Output {
    std::process::Command::new(super::server::bin())
        .args(["healthcheck", "--listen", listen])
        .env_remove("LISTEN_ADDR")
        .output()
        .unwrap()
}

#[test]
fn the_healthcheck_command_passes_for_a_serving_sidecar_and_fails_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--mqtt-listen", "off"]);
    // 0.0.0.0 (how a container listens) means this host's loopback.
    for listen in [
        format!("127.0.0.1:{}", server.port),
        format!("0.0.0.0:{}", server.port),
    ] {
        let o = healthcheck(&listen);
        assert!(
            o.status.success(),
            "{listen}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    server.kill9();
    let o = healthcheck(&format!("127.0.0.1:{}", server.port));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unhealthy"),
        "{o:?}"
    );
}
