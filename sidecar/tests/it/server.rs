//! The real `sidecar` binary as a child process: started on a port the test picks, ready when
//! `/health` answers, killed (SIGKILL) or stopped (SIGTERM) on demand, and always reaped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use test_support::{free_port, http_get, wait_until};

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    /// The embedded MQTT broker's TCP port, unless the test passed its own `--mqtt-listen`.
    pub mqtt_port: Option<u16>,
    log: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sidecar")
}

/// `sidecar bootstrap`; returns the admin key (the last line of stdout).
pub fn bootstrap(data: &Path) -> String {
    bootstrap_with(data, &[])
}

/// `sidecar bootstrap` with more flags (a shared store's); the admin key.
pub fn bootstrap_with(data: &Path, extra: &[String]) -> String {
    let out = Command::new(bin())
        .args(["bootstrap", "--data-dir", data.to_str().unwrap()])
        .args(extra)
        .env_remove("KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().unwrap().trim().to_owned()
}

impl Server {
    /// Start on ports picked here. Another test can take a picked port before the server binds
    /// it; that case is retried on fresh ports.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Self::start_retrying(data, None, extra)
    }

    /// Start with the REST port given (the MQTT port, unless given in `extra`, is still picked).
    pub fn start_on(data: &Path, port: u16, extra: &[&str]) -> Server {
        Self::start_retrying(data, Some(port), extra)
    }

    fn start_retrying(data: &Path, port: Option<u16>, extra: &[&str]) -> Server {
        let mut last = String::new();
        for _ in 0..5 {
            let mqtt_port = (!extra.contains(&"--mqtt-listen")).then(free_port);
            match Self::try_start(data, port.unwrap_or_else(free_port), mqtt_port, extra) {
                Ok(s) => return s,
                Err(log) if log.contains("in use") => last = log,
                Err(log) => panic!("sidecar exited early:\n{log}"),
            }
        }
        panic!("sidecar found no free port in 5 attempts:\n{last}")
    }

    /// Start and wait until ready; `Err(log)` when the process exited first.
    fn try_start(
        data: &Path,
        port: u16,
        mqtt_port: Option<u16>,
        extra: &[&str],
    ) -> Result<Server, String> {
        let log = data.with_extension(format!("{port}.log"));
        let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let listen = format!("127.0.0.1:{port}");
        let mqtt_listen = mqtt_port.map(|p| format!("127.0.0.1:{p}"));
        let child = Command::new(bin())
            .args([
                "serve",
                "--listen",
                &listen,
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .args(if extra.contains(&"--policies") {
                vec![]
            } else {
                vec!["--policies", policies.to_str().unwrap()]
            })
            .args(match &mqtt_listen {
                Some(l) => vec!["--mqtt-listen", l.as_str()],
                None => vec![],
            })
            .args(extra)
            .env_remove("KEY_ENCRYPTION_KEY")
            .env_remove("RATE_LIMIT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Server {
            child: Some(child),
            port,
            mqtt_port,
            log,
        };
        let mut exited = false;
        let ready = wait_until(Duration::from_secs(20), || {
            if let Some(Ok(Some(_))) = s.child.as_mut().map(|c| c.try_wait()) {
                exited = true;
                return true;
            }
            // Ready as the README defines it: /health answers and the MQTT port accepts.
            matches!(http_get(port, "/health"), Some((200, _)))
                && mqtt_port.is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
        });
        if exited {
            let log = s.log();
            s.child = None;
            return Err(log);
        }
        assert!(ready, "sidecar not ready:\n{}", s.log());
        Ok(s)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .ok()?;
        let mut status = None;
        wait_until(Duration::from_secs(10), || {
            status = c.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
