//! What `docker/Dockerfile` says, read the way `docker build` would for the parts the tests need:
//! its stages and their parents, `ENV`, `COPY`, `USER`, `ENTRYPOINT`, `CMD`, `HEALTHCHECK` and
//! `RUN`. There is no engine here, so the compose test takes an image's environment, default
//! command and files from this, and the lint test checks the stages against it.

use std::collections::BTreeMap;

/// One `COPY`.
#[derive(Clone, Debug)]
pub struct Copy {
    /// `--from=STAGE`, when it copies out of another stage.
    pub from: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
}

/// One `FROM … [AS name]` and what follows it.
#[derive(Clone, Debug, Default)]
pub struct Stage {
    pub name: Option<String>,
    pub from: String,
    pub env: Vec<(String, String)>,
    pub copies: Vec<Copy>,
    pub runs: Vec<String>,
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// The `HEALTHCHECK … CMD [...]` command.
    pub healthcheck: Option<Vec<String>>,
    pub volumes: Vec<String>,
}

/// A parsed Dockerfile.
#[derive(Debug)]
pub struct Dockerfile {
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Parse; panics with the line on anything it does not understand (a test fixture).
    pub fn parse(text: &str) -> Dockerfile {
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical_lines(text) {
            let (op, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let rest = rest.trim();
            if op.eq_ignore_ascii_case("FROM") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let name = match words.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("AS") => Some((*n).to_owned()),
                    [_] => None,
                    _ => panic!("FROM {rest}"),
                };
                stages.push(Stage {
                    name,
                    from: words[0].to_owned(),
                    ..Stage::default()
                });
                continue;
            }
            let stage = stages
                .last_mut()
                .unwrap_or_else(|| panic!("{op} before FROM"));
            match op.to_ascii_uppercase().as_str() {
                "ENV" => stage.env.extend(env_pairs(rest)),
                "COPY" => stage.copies.push(copy(rest)),
                "RUN" => stage.runs.push(rest.to_owned()),
                "USER" => stage.user = Some(rest.to_owned()),
                "ENTRYPOINT" => stage.entrypoint = Some(exec_form(rest)),
                "CMD" => stage.cmd = Some(exec_form(rest)),
                "HEALTHCHECK" => {
                    let (_, cmd) = rest
                        .split_once("CMD ")
                        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {rest}"));
                    stage.healthcheck = Some(exec_form(cmd));
                }
                "VOLUME" => stage
                    .volumes
                    .extend(rest.split_whitespace().map(str::to_owned)),
                "WORKDIR" | "EXPOSE" | "ARG" | "LABEL" => {}
                other => panic!("Dockerfile instruction {other} is not understood here"),
            }
        }
        Dockerfile { stages }
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> &Stage {
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("the Dockerfile has no stage {name}"))
    }

    /// `name` and the stages it is built on, the base first.
    pub fn chain(&self, name: &str) -> Vec<&Stage> {
        let mut chain = vec![self.stage(name)];
        while let Some(parent) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(chain[0].from.as_str()))
        {
            chain.insert(0, parent);
        }
        chain
    }

    /// The environment an image of stage `name` starts with (inherited, later wins).
    pub fn env(&self, name: &str) -> BTreeMap<String, String> {
        self.chain(name)
            .into_iter()
            .flat_map(|s| s.env.iter().cloned())
            .collect()
    }

    /// The last value of an inherited setting.
    pub fn inherited<T: Clone>(&self, name: &str, get: impl Fn(&Stage) -> Option<T>) -> Option<T> {
        self.chain(name).into_iter().rev().find_map(get)
    }

    /// `COPY SRC DEST` from the build context into stage `name` or its parents: (dest, source).
    pub fn context_copies(&self, name: &str) -> Vec<(String, String)> {
        self.chain(name)
            .into_iter()
            .flat_map(|s| s.copies.iter())
            .filter(|c| c.from.is_none())
            .flat_map(|c| c.sources.iter().map(|src| (c.dest.clone(), src.clone())))
            .collect()
    }
}

/// Lines joined at trailing backslashes, comments and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur).trim().to_owned());
            }
        }
    }
    out.retain(|l| !l.is_empty());
    out
}

fn env_pairs(rest: &str) -> Vec<(String, String)> {
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("ENV {kv}: use KEY=VALUE"));
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

fn copy(rest: &str) -> Copy {
    let mut words: Vec<&str> = rest.split_whitespace().collect();
    let from = match words.first() {
        Some(w) if w.starts_with("--from=") => {
            let f = w.trim_start_matches("--from=").to_owned();
            words.remove(0);
            Some(f)
        }
        _ => None,
    };
    let dest = words
        .pop()
        .unwrap_or_else(|| panic!("COPY {rest}"))
        .to_owned();
    Copy {
        from,
        sources: words.into_iter().map(str::to_owned).collect(),
        dest,
    }
}

fn exec_form(rest: &str) -> Vec<String> {
    serde_json::from_str(rest.trim())
        .unwrap_or_else(|e| panic!("{rest}: not the exec (JSON) form: {e}"))
}
