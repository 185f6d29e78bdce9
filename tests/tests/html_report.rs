//! The HTML report, rendered from real pipeline data and loaded in a real headless browser.
//!
//! Needs Chromium (`apt-get install -y chromium`, done by `scripts/test.sh`); the
//! test fails, rather than skips, when it is missing. Set `CHROMIUM` to use another binary and
//! `SHADOWDIFF_HTML_ARTIFACTS=DIR` to keep the page and its screenshot for a look.
#![allow(clippy::unwrap_used)]

use shadowdiff_pipeline::demo::{generate_traffic, Build, DemoServer};
use shadowdiff_store::html::render_html;
use shadowdiff_store::text::render_text;
use shadowdiff_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Chromium is not installed, and the HTML report test needs a real browser. Run the \
         test-deps install script (`scripts/test.sh` installs it; or `apt-get install -y \
         chromium` on Debian), or point CHROMIUM at a Chrome/Chromium binary."
    );
}

/// Runs headless Chromium on `page` with `extra` flags; returns (stdout, stderr).
fn headless(browser: &Path, page: &Path, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            assert!(
                status.success(),
                "chromium exited with {status}\nstderr:\n{stderr}"
            );
            return (stdout, stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("chromium did not finish within 90 s\nstderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How a serialised DOM writes text: only `&`, `<`, `>` (and no-break spaces) are escaped.
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

/// A report from real pipeline data: the demo's control, regressed candidate and A/A secondary.
async fn demo_report() -> shadowdiff_store::Report {
    let control = DemoServer::start(Build::Control).await.unwrap();
    let candidate = DemoServer::start(Build::Candidate).await.unwrap();
    let secondary = DemoServer::start(Build::Control).await.unwrap();
    let secondary_url = secondary.url();
    let h = start_pipeline(&control.url(), &[("v2", &candidate.url())], |c| {
        c.replay.secondary = Some(secondary_url);
    })
    .await;
    let traffic = generate_traffic(h.pipeline.addr, 400, 8, Duration::from_secs(60)).await;
    assert!(traffic.ok > 300, "{traffic:?}");
    let (report, _stats, _data) = h.finish().await;
    control.stop().await;
    candidate.stop().await;
    secondary.stop().await;
    assert!(report.endpoints.len() >= 3, "{report:#?}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_report_of_demo_traffic_fits_80_columns() {
    let report = demo_report().await;
    let plain = render_text(&report, false);
    for line in plain.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} chars: {line}",
            line.chars().count()
        );
    }
    assert!(!plain.contains('\x1b'), "escape codes without colour");
    for e in &report.endpoints {
        assert!(plain.contains(&format!("{} {}", e.method, e.route)));
    }
    let coloured = render_text(&report, true);
    assert!(coloured.contains("\x1b["), "colour when asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_of_demo_traffic_renders_in_a_real_browser() {
    let browser = chromium();
    let report = demo_report().await;
    let regressed = report
        .endpoints
        .iter()
        .find(|e| e.verdict == "regression" && !e.signatures.is_empty())
        .expect("the demo candidate regresses somewhere");
    let sample = &regressed.signatures[0].sample;
    assert!(
        !sample.differences.is_empty(),
        "samples carry structured differences"
    );

    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let html = render_html(&report);
    std::fs::write(&page, &html).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src="),
        "the page must not load anything"
    );

    // The DOM after the page's script ran.
    let (dom, stderr) = headless(&browser, &page, &["--dump-dom"]);
    assert!(
        dom.contains("data-ok=\"1\""),
        "the inline script did not finish:\n{}\nstderr:\n{stderr}",
        &dom[..dom.len().min(2000)]
    );
    assert!(!dom.contains("data-error"), "script error in {dom}");
    for line in stderr.lines() {
        assert!(
            !(line.contains("CONSOLE") && (line.contains("Uncaught") || line.contains("Error"))),
            "console error: {line}"
        );
    }
    assert!(dom.contains(&format!("data-endpoints=\"{}\"", report.endpoints.len())));
    assert_eq!(
        dom.matches("class=\"endpoint-row\"").count(),
        report.endpoints.len(),
        "one overview row per endpoint"
    );
    for e in &report.endpoints {
        assert!(
            dom.contains(&dom_text(&format!("{} {}", e.method, e.route))),
            "{} {} missing",
            e.method,
            e.route
        );
    }
    // The side-by-side sample: each difference's path, and the text rendering line by line.
    for d in &sample.differences {
        assert!(dom.contains(&dom_text(&d.path)), "{} missing", d.path);
    }
    for line in sample.diff.lines() {
        assert!(
            dom.contains(&dom_text(line)),
            "sample line {line:?} missing"
        );
    }
    assert!(dom.contains("class=\"sbs\""), "no side-by-side table");
    assert!(dom.contains("<mark>"), "no highlighted difference");

    // A screenshot that is more than a blank page.
    let png = dir.path().join("report.png");
    headless(
        &browser,
        &page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
        ],
    );
    let size = std::fs::metadata(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()))
        .len();
    assert!(size > 10 * 1024, "screenshot is only {size} bytes");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    if let Some(keep) = std::env::var_os("SHADOWDIFF_HTML_ARTIFACTS") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&page, keep.join("report.html")).unwrap();
        std::fs::copy(&png, keep.join("report.png")).unwrap();
    }
}
