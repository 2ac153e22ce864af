//! The README's "A first session", executed as written: its `sh` block is taken from README.md
//! and run by bash with the same commands and flags. Only three things differ, each visible
//! here: `cargo run … -p PKG [--bin BIN] -- ARGS` runs the binary `cargo test --workspace` built
//! (a nested cargo would rebuild under the running tests), the ports are ones this test picked
//! (8080, 1883 and 4222 are rewritten in the text; `serve` gets `LISTEN_ADDR`/`MQTT_LISTEN` and
//! the example programs `SIDECAR_URL` for their defaults), and the working directory is a temporary copy of what the block reads
//! (`policies/`, `docker/*.conf`). The walk must end with the device refused outside its
//! grants by both brokers; the example programs exit non-zero when a refusal does not come.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The first ```sh block after the "## A first session" heading.
fn first_session_block(readme: &str) -> String {
    let at = readme
        .find("\n## A first session\n")
        .expect("README.md has a section \"A first session\"");
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("the section has an sh block") + "```sh\n".len();
    let len = rest[start..].find("\n```").expect("the sh block is closed");
    rest[start..start + len].to_owned()
}

/// `cargo run [--release] [-q] -p PKG [--bin BIN] -- ARGS` as the built binary; anything else
/// the README might start using fails the walk instead of being run differently.
const PRELUDE: &str = r#"set -euo pipefail
cargo() {
  [ "${1:-}" = run ] || { echo "first-session shim: only 'cargo run' is known: $*" >&2; return 2; }
  shift
  local pkg="" bin=""
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    case "$1" in
      -p) pkg=$2; shift 2 ;;
      --bin) bin=$2; shift 2 ;;
      --release|-q) shift ;;
      *) echo "first-session shim: unknown cargo flag $1" >&2; return 2 ;;
    esac
  done
  [ $# -gt 0 ] && shift
  "$BINS/${bin:-$pkg}" "$@"
}
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
"#;

/// bash in its own process group, killed whole on drop (the block starts servers with `&`).
struct Walk(Child);

impl Drop for Walk {
    fn drop(&mut self) {
        // bash's own kill: procps-ng 4.0.2's `kill -9 -PGID` (Debian 12) signals every
        // process (as `kill -9 -1` would), which took this machine's shell with it.
        let _ = Command::new("bash")
            .args(["-c", "kill -KILL -- -\"$0\"", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn rewrite_ports(block: &str, http: u16, mqtt: u16, nats: u16) -> String {
    for needle in [":8080", ":1883", "-p 4222", ":4222"] {
        assert!(block.contains(needle), "the block no longer uses {needle}");
    }
    block
        .replace(":8080", &format!(":{http}"))
        .replace(":1883", &format!(":{mqtt}"))
        .replace("-p 4222", &format!("-p {nats}"))
        .replace(":4222", &format!(":{nats}"))
}

fn workdir(repo: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("policies"), dir.path().join("policies")).unwrap();
    std::fs::create_dir(dir.path().join("docker")).unwrap();
    for e in std::fs::read_dir(repo.join("docker")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "conf") {
            std::fs::copy(&p, dir.path().join("docker").join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn the_readme_first_session_ends_with_a_device_refused_by_both_brokers() {
    let repo = broker_auth_journeys::repo();
    let bins = broker_auth_journeys::workspace_bins();
    for bin in [
        "device-login",
        "sign",
        "device-announce",
        "mqtt-device",
        "nats-device",
    ] {
        assert!(
            bins.join(bin).is_file(),
            "{} is missing: `cargo test --workspace` builds the example programs",
            bins.join(bin).display()
        );
    }
    let nats = test_support::nats_server_bin();
    test_support::require_tool("curl", "apt-get install -y curl");
    test_support::require_tool("python3", "apt-get install -y python3");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let (http, mqtt, nats_port) = (
        test_support::free_port(),
        test_support::free_port(),
        test_support::free_port(),
    );
    let block = rewrite_ports(&first_session_block(&readme), http, mqtt, nats_port);
    let dir = workdir(&repo);
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let path = format!(
        "{}:{}",
        nats.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!("{PRELUDE}\n{block}\n"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("BINS", &bins)
        .env("LISTEN_ADDR", format!("127.0.0.1:{http}"))
        .env("MQTT_LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("SIDECAR_URL", format!("http://127.0.0.1:{http}"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut walk = Walk(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = walk.0.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| {
        let mut s = String::new();
        std::fs::File::open(p)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    let (stdout, stderr) = (read(&out), read(&err));
    let walked = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        status.is_some(),
        "the walk did not finish in 120 s\n{walked}"
    );
    assert!(status.unwrap().success(), "the walk failed\n{walked}");
    check_what_it_showed(dir.path(), &stdout, &stderr, &walked);
}

/// What a reader of the README is told to expect, seen in the walk's own output.
fn check_what_it_showed(dir: &Path, stdout: &str, stderr: &str, walked: &str) {
    let key_file = dir.join("data/admin.key");
    let admin_key = std::fs::read_to_string(&key_file).unwrap();
    let admin_key = admin_key.trim();
    assert!(admin_key.len() > 20, "admin.key holds a key");
    assert!(
        !stdout.contains(admin_key) && !stderr.contains(admin_key),
        "the admin key is printed or logged\n{walked}"
    );
    assert!(
        stderr.contains("admin.key"),
        "the first start says where the admin key is\n{walked}"
    );
    // The by-hand login reads its own identity back.
    assert!(stdout.contains("\"type\":\"user\""), "auth/me\n{walked}");
    // Both brokers admitted the device's own telemetry and refused someone else's topic.
    assert!(
        stdout.contains("telemetry 3/3 acknowledged"),
        "MQTT telemetry\n{walked}"
    );
    let refusals: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("outside my grants, as expected"))
        .collect();
    assert_eq!(refusals.len(), 2, "one refusal per broker\n{walked}");
    assert!(
        refusals[0].contains("NotAuthorized"),
        "MQTT PUBACK 0x87\n{walked}"
    );
    assert!(
        refusals[1].to_lowercase().contains("permissions violation"),
        "NATS -ERR\n{walked}"
    );
    assert!(
        stdout.contains("connected to NATS"),
        "NATS connect\n{walked}"
    );
}
