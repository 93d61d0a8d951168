//! `cargo xtask ci`: the one command CI runs.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

/// Options of `cargo xtask ci`.
#[derive(clap::Args)]
pub struct CiArgs {
    /// Skip `download-files` (tests that need model files then skip themselves).
    #[arg(long)]
    pub no_download: bool,
}

struct Step {
    name: &'static str,
    program: &'static str,
    args: Vec<&'static str>,
    env: Vec<(&'static str, &'static str)>,
}

fn step(name: &'static str, args: &[&'static str]) -> Step {
    Step {
        name,
        program: "cargo",
        args: args.to_vec(),
        env: Vec::new(),
    }
}

/// Runs the CI steps in order, stopping at the first failure.
pub fn run(args: CiArgs) -> anyhow::Result<()> {
    let mut steps = vec![
        step("rustfmt", &["fmt", "--all", "--check"]),
        step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    // The public API matches its committed snapshot (a change is reviewed and blessed).
    steps.push(step(
        "public API snapshot",
        &["run", "--quiet", "--package", "xtask", "--", "public-api"],
    ));
    if !args.no_download {
        steps.push(step(
            "download-files",
            &[
                "run",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "download-files",
            ],
        ));
    }
    // Plugins depend on the core without its default features (no agent server, CLI or
    // server API client): check that this light core, and each plugin on it alone, builds.
    steps.push(step(
        "light core (no default features)",
        &[
            "clippy",
            "--package",
            "livekit-agents",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ));
    for plugin in [
        "livekit-plugins-openai",
        "livekit-plugins-deepgram",
        "livekit-plugins-cartesia",
        "livekit-plugins-silero",
        "livekit-plugins-turn-detector",
    ] {
        steps.push(step(
            "plugin on the light core",
            &["check", "--package", plugin, "--lib"],
        ));
    }
    steps.push(step(
        "install-test-deps",
        &[
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "install-test-deps",
        ],
    ));
    let mut tests = step("tests", &["test", "--workspace"]);
    // Tests whose packages are missing fail instead of skipping themselves.
    tests.env.push(("LK_REQUIRE_TEST_DEPS", "1"));
    steps.push(tests);
    // The OpenTelemetry exporter is an opt-in feature: lint it and run its tests against the
    // local OTLP receivers.
    steps.push(step(
        "otel feature (clippy)",
        &[
            "clippy",
            "--package",
            "livekit-agents",
            "--features",
            "otel",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ));
    steps.push(step(
        "otel feature (tests)",
        &[
            "test",
            "--package",
            "livekit-agents",
            "--features",
            "otel",
            "--test",
            "otel_export",
        ],
    ));
    let mut docs = step("docs", &["doc", "--workspace", "--no-deps"]);
    docs.env.push(("RUSTDOCFLAGS", "-D warnings"));
    steps.push(docs);
    let mut room = step(
        "room feature type-check (DOCS_RS=1)",
        &[
            "check",
            "--package",
            "livekit-agents",
            "--package",
            "examples",
            "--features",
            "livekit-agents/room,examples/room",
            "--lib",
            "--examples",
        ],
    );
    room.env.push(("DOCS_RS", "1"));
    steps.push(room);

    let total = Instant::now();
    for s in &steps {
        let started = Instant::now();
        eprintln!("==> {}: {} {}", s.name, s.program, s.args.join(" "));
        let status = Command::new(s.program)
            .args(&s.args)
            .envs(s.env.iter().copied())
            .status()
            .with_context(|| format!("could not run {}", s.program))?;
        if !status.success() {
            bail!("step '{}' failed ({status})", s.name);
        }
        eprintln!(
            "<== {} ok in {:.1}s",
            s.name,
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "all CI steps passed in {:.1}s",
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
