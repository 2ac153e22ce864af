//! `sidecar serve` on an empty data directory, as a journey starts it: the first-start admin
//! key read from `admin.key`, the shipped policies, MQTT off unless asked for; killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Sidecar {
    child: Child,
    port: u16,
    admin_key: String,
    dir: tempfile::TempDir,
}

impl Sidecar {
    /// Start it with `env` on top of its defaults; waits for `/healthz` and `admin.key`.
    pub fn start(env: &[(&str, &str)]) -> Sidecar {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = test_support::free_port();
        let log = std::fs::File::create(dir.path().join("sidecar.log"))
            .unwrap_or_else(|e| panic!("log file: {e}"));
        let mut cmd = Command::new(crate::workspace_bins().join("sidecar"));
        cmd.arg("serve")
            .env("DATA_DIR", dir.path().join("data"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("POLICY_DIR", crate::repo().join("policies"))
            .env("MQTT_LISTEN", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn sidecar: {e}"));
        let mut s = Sidecar {
            child,
            port,
            admin_key: String::new(),
            dir,
        };
        let up = test_support::wait_until(Duration::from_secs(30), || {
            test_support::http_get(port, "/healthz").is_some_and(|(code, _)| code == 204)
        });
        assert!(up, "sidecar did not come up:\n{}", s.log());
        let key = s.dir.path().join("data/admin.key");
        s.admin_key = std::fs::read_to_string(&key)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", key.display(), s.log()))
            .trim()
            .to_owned();
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
