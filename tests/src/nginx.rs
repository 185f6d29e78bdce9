//! Debian's nginx, started by a test on a free loopback port with a site configuration of the
//! test's own, and stopped with its workers when the test ends (also on panic). Tests that use
//! it need the `nginx` binary (Debian: `apt-get install -y nginx-light`, which scripts/test.sh
//! does) and fail without it.

use shadowdiff_testkit::ports::{self, StartFailure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The nginx binary; panics with how to install it when there is none (a test that needs a
/// server fails without it).
pub fn binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is required: run scripts/test.sh, or apt-get install -y nginx-light")
}

/// The nginx master a test started, and its directory (configuration, logs, files).
pub struct Nginx {
    master: Child,
    dir: tempfile::TempDir,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Nginx {
    /// Starts nginx with the `http { … }` block's contents that `site(listen, dir)` returns
    /// (`listen` is `127.0.0.1:PORT` on a free port, `dir` the private directory the
    /// configuration lives in); another port when nginx finds this one taken. Waits until it
    /// listens.
    pub fn start(site: impl Fn(&str, &Path) -> String) -> Self {
        let nginx = binary();
        let (_, started) = ports::start_on_free_port("nginx", |port| {
            let dir = tempfile::tempdir().map_err(|e| StartFailure::Failed(e.to_string()))?;
            let conf = write_config(dir.path(), &site(&format!("127.0.0.1:{port}"), dir.path()));
            let check = Command::new(&nginx)
                .args(["-t", "-q", "-p"])
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .output()
                .map_err(|e| StartFailure::Failed(e.to_string()))?;
            if !check.status.success() {
                return Err(StartFailure::Failed(format!(
                    "nginx -t: {}",
                    String::from_utf8_lossy(&check.stderr)
                )));
            }
            let master = Command::new(&nginx)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| StartFailure::Failed(e.to_string()))?;
            let mut started = Nginx { master, dir, port };
            let errors = started.dir.path().join("error.log");
            ports::wait_listening(
                &mut started.master,
                &[port],
                Duration::from_secs(20),
                || std::fs::read_to_string(&errors).unwrap_or_default(),
            )?;
            Ok(started)
        });
        started
    }

    /// The master's worker processes.
    pub fn workers(&self) -> Vec<u32> {
        ports::descendants(self.master.id())
    }

    /// Its directory (configuration, logs and whatever the site put there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether `pid` is a process that still runs (not gone, not a zombie).
pub fn running(pid: u32) -> bool {
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
            .args(["-TERM", &self.master.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.master.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for worker in workers.iter().filter(|w| running(**w)) {
            let _ = Command::new("kill")
                .args(["-KILL", &worker.to_string()])
                .status();
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// One worker in the foreground, logs and temporary files in `dir`, `site` inside `http`.
fn write_config(dir: &Path, site: &str) -> PathBuf {
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
    std::fs::write(&path, main).expect("the test's own directory is writable");
    path
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
