//! Smoke test of the benchmark scripts: they parse, `--help` works, bad arguments are refused.
//! (The benchmarks themselves are not tests: they need quiet cores and take minutes.)

use std::path::Path;
use std::process::Command;

const SCRIPTS: [&str; 8] = [
    "tap.sh",
    "isolation.sh",
    "pipeline.sh",
    "memory.sh",
    "p99.sh",
    "wakeups.sh",
    "dashboards.sh",
    "instructions.sh",
];

fn script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn every_script_parses_and_prints_help() {
    for name in SCRIPTS {
        let syntax = Command::new("bash").arg("-n").arg(script(name)).status();
        assert!(syntax.is_ok_and(|s| s.success()), "{name}: bash -n failed");
        let help = Command::new("bash")
            .arg(script(name))
            .arg("--help")
            .output()
            .expect("bash runs");
        assert!(help.status.success(), "{name} --help failed");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains(&format!("bench/{name}")), "{name}: {text}");
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_starts() {
    for name in SCRIPTS {
        let out = Command::new("bash")
            .arg(script(name))
            .arg("--no-such-flag")
            .output()
            .expect("bash runs");
        assert_eq!(out.status.code(), Some(2), "{name}");
    }
}
