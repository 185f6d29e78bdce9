//! Debian's nginx, configured with deploy/nginx/shadowdiff-mirror.conf, mirrors real traffic to
//! `run --mode mirror`: clients get production's answer, shadowdiff gets the exchanges.
//! Needs the `nginx` binary (Debian: `apt-get install -y nginx-light`, which scripts/test.sh
//! does); fails without it.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowdiff_pipeline::config::CaptureMode;
use shadowdiff_testkit::ports::{self, StartFailure};
use shadowdiff_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The nginx master we started, and its directory (configuration, logs); stopped with its
/// workers when the test ends, also on panic.
struct Nginx(Child, tempfile::TempDir);

impl Nginx {
    /// The master's worker processes.
    fn workers(&self) -> Vec<u32> {
        ports::descendants(self.0.id())
    }
}

/// Whether `pid` is a process that still runs (not gone, not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

impl Drop for Nginx {
    /// SIGTERM, nginx's fast shutdown, which stops the workers too; a SIGKILL of the master
    /// alone left its worker running, listening, after the test. After 5 s, SIGKILL for all.
    fn drop(&mut self) {
        let workers = self.workers();
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for worker in workers.iter().filter(|w| running(**w)) {
            let _ = Command::new("kill")
                .args(["-KILL", &worker.to_string()])
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts nginx mirroring to `shadowdiff`, on a free port (another one when nginx finds it
/// taken), and waits until it listens; the port and the running nginx.
fn start_nginx(nginx: &Path, production: &str, shadowdiff: &str) -> (u16, Nginx) {
    ports::start_on_free_port("nginx", |port| {
        let dir = tempfile::tempdir().unwrap();
        let conf = write_config(
            dir.path(),
            &format!("127.0.0.1:{port}"),
            production,
            shadowdiff,
        );
        let check = Command::new(nginx)
            .args(["-t", "-q", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        if !check.status.success() {
            return Err(StartFailure::Failed(format!(
                "nginx -t: {}",
                String::from_utf8_lossy(&check.stderr)
            )));
        }
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut nginx = Nginx(child, dir);
        let errors = nginx.1.path().join("error.log");
        ports::wait_listening(&mut nginx.0, &[port], Duration::from_secs(20), || {
            std::fs::read_to_string(&errors).unwrap_or_default()
        })?;
        Ok(nginx)
    })
}

fn write_config(dir: &Path, listen: &str, production: &str, shadowdiff: &str) -> PathBuf {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/shadowdiff-mirror.conf"),
    )
    .unwrap();
    let site = template
        .replace("__LISTEN__", listen)
        .replace("__PRODUCTION__", production)
        .replace("__SHADOWDIFF__", shadowdiff);
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n{user}events {{ worker_connections 128; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}\n}}\n",
        // As root, keep workers as root so they can use the private temp directory.
        user = if is_root() { "user root;\n" } else { "" },
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, main).unwrap();
    path
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_mirror_feeds_the_mirror_receiver_and_clients_get_production() {
    // A test that needs a server fails without it: scripts/test.sh installs nginx.
    let nginx = nginx_binary()
        .expect("nginx is required: run scripts/test.sh, or apt-get install -y nginx-light");
    let production = TestServer::start(|s| {
        Reply::json(
            json!({"from": "production", "path": s.path, "body": String::from_utf8_lossy(&s.body)}),
        )
    })
    .await;
    let replica = TestServer::start(|s| {
        Reply::json(
            json!({"from": "production", "path": s.path, "body": String::from_utf8_lossy(&s.body)}),
        )
    })
    .await;
    let candidate = TestServer::start(|s| {
        let from = if s.path.ends_with("/2") {
            "candidate"
        } else {
            "production"
        };
        Reply::json(json!({"from": from, "path": s.path, "body": String::from_utf8_lossy(&s.body)}))
    })
    .await;
    let h = start_pipeline(&replica.url(), &[("v2", &candidate.url())], |c| {
        c.capture.mode = CaptureMode::Mirror;
    })
    .await;

    let (port, nginx) = start_nginx(
        &nginx,
        &production.addr.to_string(),
        &h.pipeline.addr.to_string(),
    );

    let c = client();
    for id in 1..=3 {
        let got = send(
            &c,
            "GET",
            &format!("http://127.0.0.1:{port}/users/{id}"),
            b"",
        )
        .await;
        assert_eq!(got.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(
            (v["from"].as_str(), v["path"].as_str()),
            (Some("production"), Some(format!("/users/{id}").as_str()))
        );
    }
    let got = send(
        &c,
        "POST",
        &format!("http://127.0.0.1:{port}/orders"),
        b"{\"n\":1}",
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["body"], "{\"n\":1}", "production got the body");

    // Bounded wait for the mirrored copies to arrive and be replayed.
    for _ in 0..100 {
        if h.pipeline.stats.captured.load(Ordering::Relaxed) >= 4 && candidate.seen().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stopping nginx stops its workers too: none is left running (and listening) after it.
    let workers = nginx.workers();
    assert!(!workers.is_empty(), "nginx runs a master and its workers");
    drop(nginx);
    for _ in 0..100 {
        if !workers.iter().any(|w| running(*w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<_> = workers.iter().filter(|w| running(**w)).collect();
    assert!(left.is_empty(), "nginx workers still running: {left:?}");
    let (report, stats, _data) = h.finish().await;
    assert_eq!(stats.captured.load(Ordering::Relaxed), 4);
    let users = endpoint(&report, "GET", "/users/{id}", "v2");
    assert_eq!((users.compared, users.mismatched), (3, 1), "{users:#?}");
    // The mirrored POST arrived with its body and was guarded, not replayed.
    assert_eq!(endpoint(&report, "POST", "/orders", "v2").blocked, 1);
    assert!(candidate.seen().iter().all(|s| s.method == "GET"));
}
