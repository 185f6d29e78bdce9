//! The `shadowdiff` binary: flags, config errors, demo and report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn shadowdiff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run shadowdiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_documents_every_subcommand() {
    let (code, out, _) = run(shadowdiff().arg("--help"));
    assert_eq!(code, 0);
    for sub in ["run", "demo", "report"] {
        assert!(out.contains(sub), "--help lacks {sub}: {out}");
    }
    let (code, out, _) = run(shadowdiff().args(["run", "--help"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("--candidate") && out.contains("NAME=URL"),
        "{out}"
    );
}

#[test]
fn each_stage_refuses_flags_it_does_not_use() {
    for (stage, flag, value) in [
        ("diff", "--listen", "127.0.0.1:1"),
        ("diff", "--tap-threads", "2"),
        ("diff", "--candidate", "v2=http://127.0.0.1:2"),
        ("diff", "--exchanges-topic", "t"),
        ("capture", "--candidate", "v2=http://127.0.0.1:2"),
        ("capture", "--clickhouse", "http://127.0.0.1:8123"),
        ("capture", "--results-topic", "t"),
        ("replay", "--listen", "127.0.0.1:1"),
        ("replay", "--clickhouse", "http://127.0.0.1:8123"),
        ("run", "--kafka", "127.0.0.1:9092"),
    ] {
        let (code, _, err) = run(shadowdiff().args([stage, flag, value]));
        assert_eq!(code, 2, "{stage} {flag}: {err}");
        assert!(
            err.contains("unexpected argument") && err.contains(flag),
            "{stage} {flag}: {err}"
        );
    }
}

#[test]
fn help_shows_the_defaults_of_the_config_and_a_default_never_overrides_the_file() {
    let (_, out, _) = run(shadowdiff().args(["run", "--help"]));
    // The defaults shown come from the config's own defaults.
    for shown in [
        "[default: 262144]",
        "[default: 127.0.0.1:8080]",
        "[default: 5000]",
    ] {
        assert!(out.contains(shown), "run --help lacks {shown}: {out}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    // The file's value is used when the flag is absent (its default must not win)...
    std::fs::write(&file, "[capture]\ncontrol = \"http://127.0.0.1:1\"\nthreads = 5000\n[[replay.candidates]]\nname = \"v2\"\nurl = \"http://127.0.0.1:2\"\n").unwrap();
    let config = file.to_str().unwrap();
    let (code, _, err) = run(shadowdiff().args(["run", "--config", config, "--admin", ""]));
    assert_eq!(code, 2);
    assert!(
        err.contains("capture.threads: must be at most 1024"),
        "{err}"
    );
    // ...and the flag wins over the file when given (the next check to fail is another one).
    let (code, _, err) = run(shadowdiff().args([
        "run",
        "--config",
        config,
        "--tap-threads",
        "2",
        "--head-timeout-ms",
        "0",
    ]));
    assert_eq!(code, 2);
    assert!(
        !err.contains("capture.threads") && err.contains("capture.head_timeout_ms"),
        "{err}"
    );
    // A variable counts as given, like a flag.
    let (code, _, err) = run(shadowdiff()
        .args(["run", "--config", config, "--head-timeout-ms", "0"])
        .env("SHADOWDIFF_TAP_THREADS", "3"));
    assert_eq!(code, 2);
    assert!(
        !err.contains("capture.threads") && err.contains("capture.head_timeout_ms"),
        "{err}"
    );
}

#[test]
fn bad_flags_and_configs_exit_with_precise_messages() {
    let (code, _, err) = run(shadowdiff().args(["run", "--control", "http://127.0.0.1:1"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("replay.candidates") && err.contains("--candidate NAME=URL"),
        "{err}"
    );

    let (code, _, err) = run(shadowdiff().args([
        "run",
        "--control",
        "ftp://x",
        "--candidate",
        "v2=http://127.0.0.1:2",
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("capture.control") && err.contains("http://"),
        "{err}"
    );

    let (code, _, err) = run(shadowdiff().args(["run", "--candidate", "nourl"]));
    assert_eq!(code, 2);
    assert!(err.contains("NAME=URL"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[replay]\ntimeout = 5\n").unwrap();
    let (code, _, err) = run(shadowdiff().args(["run", "--config"]).arg(&file));
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("timeout") && err.contains("line 2"),
        "{err}"
    );

    let (code, _, err) = run(shadowdiff().args(["report", "--data", "/nonexistent/dir"]));
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");

    let (code, _, err) = run(shadowdiff()
        .args(["report", "--since", "5 parsecs"])
        .arg("--data")
        .arg(dir.path()));
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");
}

#[test]
fn demo_finds_regressions_and_report_is_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(shadowdiff()
        .args(["demo", "--requests", "400", "--format", "json", "--data"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    // Logs went to a pipe, not a terminal: no colour codes in them.
    assert!(err.contains("INFO"), "the demo logs: {err}");
    assert!(!err.contains('\x1b'), "escape codes in piped logs: {err:?}");
    let demo: serde_json::Value = serde_json::from_str(&out).expect("demo prints report JSON");
    let endpoints = demo["endpoints"].as_array().unwrap();
    let find = |route: &str| endpoints.iter().find(|e| e["route"] == route).unwrap();
    assert_eq!(find("/users/{id}")["verdict"], "regression");
    assert_eq!(find("/products/{id}")["verdict"], "regression");
    assert_eq!(find("/health")["verdict"], "clean");
    assert!(find("/orders")["blocked"].as_u64().unwrap() > 0);
    let user_fields: Vec<&str> = find("/users/{id}")["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verdict"] == "regression")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(user_fields, vec!["body.email", "body.email_address"]);

    let report = || {
        let (code, out, err) = run(shadowdiff()
            .args(["report", "--format", "json", "--data"])
            .arg(dir.path()));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let (first, second) = (report(), report());
    assert_eq!(first, second);
    assert_eq!(first["totals"], demo["totals"]);
    assert_eq!(first["totals"]["exchanges"], 400);

    let (code, text, _) = run(shadowdiff().args(["report", "--data"]).arg(dir.path()));
    assert_eq!(code, 0);
    assert!(text.contains("REGRESSION GET /users/{id}"), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert!(!text.contains('\x1b'), "no colour when not on a terminal");

    // An experiment with no results is an error naming the ones there are, not an empty report.
    let (code, out, err) = run(shadowdiff()
        .args(["report", "--experiment", "does-not-exist", "--data"])
        .arg(dir.path()));
    assert_eq!(code, 2, "{out}");
    let demo_experiment = demo["experiment"].as_str().unwrap();
    assert!(
        err.contains("no results for experiment `does-not-exist`") && err.contains(demo_experiment),
        "{err}"
    );
    let (code, _, err) = run(shadowdiff()
        .args(["report", "--experiment", demo_experiment, "--data"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
}
