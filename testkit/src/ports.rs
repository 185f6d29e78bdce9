//! Loopback ports for servers that a test starts as child processes.
//!
//! A test that starts a server in another process (a `shadowdiff` binary, a broker, a
//! database) must name its port before the server binds it. The usual way, binding port 0,
//! reading the port and dropping the listener, leaves a window in which another process can
//! take the port (an outgoing connection's ephemeral port, another test's server), and two such
//! calls in a row can return the same port. This module narrows the window and retries what is
//! left of it:
//!
//! - [`free_port`] returns a loopback port that was free when asked and that no earlier call in
//!   this process returned; on Linux it picks below the kernel's ephemeral range
//!   (`ip_local_port_range`), where outgoing connections do not take ports;
//! - [`start_on_free_port`] and [`start_on_free_ports`] run a start on fresh ports and, when
//!   the start failed because a port was taken, run it again on new ones, at most
//!   [`START_ATTEMPTS`] times, then fail the test naming what, the ports tried and the last
//!   failure;
//! - [`wait_listening`] waits until the child itself listens on its ports (on Linux the
//!   listening socket must belong to the child or a descendant, read from `/proc`), checking
//!   all along that it has not exited: a child that failed to bind is a failure, not mistaken
//!   for ready because some other process answers on its port;
//! - [`restart_on_ports`] starts a server again on the ports it had (after a kill: its data
//!   and clients' addresses name those ports), retrying the bind until a deadline.
//!
//! In-process listeners need none of this: bind port 0 and keep the listener.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many sets of ports [`start_on_free_ports`] tries before it fails the test.
pub const START_ATTEMPTS: usize = 5;

/// How often the waits here look again.
const POLL: Duration = Duration::from_millis(25);

/// Every port [`free_port`] returned in this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Lowest port [`free_port`] picks from when it picks below the ephemeral range.
const QUIET_LOW: u16 = 20_000;

/// A loopback port that was free when asked and that no earlier call in this process returned.
///
/// Free when asked only: a child process told this port can still find it taken, so start
/// children with [`start_on_free_port`], which tries another port then.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|_| {
        panic!("the set of handed-out ports is poisoned: a test panicked while picking a port")
    });
    // Below the ephemeral range first: the kernel gives those ports to outgoing connections
    // at any moment, these only to whoever binds them by number.
    if let Some((low, high)) = quiet_range() {
        for _ in 0..256 {
            let port = low + (random() % u64::from(high - low)) as u16;
            if !handed_out.contains(&port) && bindable(port) {
                handed_out.insert(port);
                return port;
            }
        }
    }
    // The kernel's choice; the listeners of ports handed out already are held until the end
    // so that it chooses another one.
    let mut held = Vec::new();
    for _ in 0..1024 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind any loopback port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("a bound listener has no address: {e}"))
            .port();
        if handed_out.insert(port) {
            return port;
        }
        held.push(listener);
    }
    panic!("no free loopback port that this process has not handed out already")
}

/// The ports below the kernel's ephemeral range (Linux), if there are enough of them.
fn quiet_range() -> Option<(u16, u16)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral_low: u16 = range.split_whitespace().next()?.parse().ok()?;
    (ephemeral_low >= QUIET_LOW + 1_000).then_some((QUIET_LOW, ephemeral_low))
}

/// Whether a listener can bind 127.0.0.1:`port` now.
fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// Why a start of a child process on some ports failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFailure {
    /// A port was taken: the child said its address is in use, or something else listens on
    /// the port while the child died or never listened. Tried again on other ports.
    PortTaken(String),
    /// The child exited before it listened, for a reason not recognised as a taken port (a
    /// bind failure is not worded the same by every server). Tried again too, within the bound.
    Exited(String),
    /// Anything else (the child cannot be run, it never listened while nothing else took its
    /// port): another port would not help, so the start fails the test at once.
    Failed(String),
}

impl StartFailure {
    /// Whether another attempt (on other ports, or later on the same) may succeed.
    pub fn retry(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }

    /// The same failure with `note` appended to its reason (where the log is, say).
    pub fn noted(self, note: impl fmt::Display) -> Self {
        match self {
            Self::PortTaken(r) => Self::PortTaken(format!("{r}\n{note}")),
            Self::Exited(r) => Self::Exited(format!("{r}\n{note}")),
            Self::Failed(r) => Self::Failed(format!("{r}\n{note}")),
        }
    }

    /// What happened.
    pub fn reason(&self) -> &str {
        match self {
            Self::PortTaken(r) | Self::Exited(r) | Self::Failed(r) => r,
        }
    }
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::PortTaken(_) => "port taken",
            Self::Exited(_) => "exited early",
            Self::Failed(_) => "failed",
        };
        write!(f, "{kind}: {}", self.reason())
    }
}

/// Runs `start` on a port from [`free_port`]; when it fails with a failure that may succeed
/// on another port ([`StartFailure::retry`]), runs it again on a new one, at most
/// [`START_ATTEMPTS`] times. Returns the port and what `start` returned.
///
/// # Panics
///
/// After [`START_ATTEMPTS`] failed attempts, or at once on [`StartFailure::Failed`], naming
/// `what`, the ports tried and the last failure.
pub fn start_on_free_port<T>(
    what: &str,
    mut start: impl FnMut(u16) -> Result<T, StartFailure>,
) -> (u16, T) {
    let (ports, started) = start_on_free_ports(what, 1, |ports| start(ports[0]));
    (ports[0], started)
}

/// [`start_on_free_port`] for a child that binds `n` ports: each attempt gets `n` new ones.
///
/// # Panics
///
/// As [`start_on_free_port`].
pub fn start_on_free_ports<T>(
    what: &str,
    n: usize,
    mut start: impl FnMut(&[u16]) -> Result<T, StartFailure>,
) -> (Vec<u16>, T) {
    let mut tried: Vec<Vec<u16>> = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        match start(&ports) {
            Ok(started) => return (ports, started),
            Err(failure) if !failure.retry() => {
                tried.push(ports);
                panic!("{what} did not start on port(s) {tried:?}: {failure}");
            }
            Err(failure) => {
                eprintln!(
                    "[testkit] {what} did not start on port(s) {ports:?} (attempt {attempt} of \
                     {START_ATTEMPTS}), trying new ports: {failure}"
                );
                tried.push(ports);
                if attempt == START_ATTEMPTS {
                    panic!(
                        "{what} did not start in {START_ATTEMPTS} attempts, on port(s) \
                         {tried:?}; last failure: {failure}"
                    );
                }
            }
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Runs `start` on `ports` again (a server restarted on the ports it had, after a kill) and,
/// while it fails with a failure that may pass ([`StartFailure::retry`]: the port still held,
/// say by a socket of the killed process not yet closed), waits until the ports can be bound
/// and runs it again, until `within` has passed.
///
/// A new port is no option here: the server's data and its clients name the old one. Since the
/// port was this process's, another process taking it in between is unlikely; the deadline
/// turns that case into a clear failure instead of a hang.
///
/// # Panics
///
/// When `within` passes without a start, or at once on [`StartFailure::Failed`], naming
/// `what`, the ports and the last failure.
pub fn restart_on_ports<T>(
    what: &str,
    ports: &[u16],
    within: Duration,
    mut start: impl FnMut(&[u16]) -> Result<T, StartFailure>,
) -> T {
    let deadline = Instant::now() + within;
    for attempt in 1.. {
        match start(ports) {
            Ok(started) => return started,
            Err(failure) if !failure.retry() => {
                panic!("{what} did not start again on port(s) {ports:?}: {failure}")
            }
            Err(failure) => {
                if Instant::now() >= deadline {
                    panic!(
                        "{what} did not start again on its port(s) {ports:?} within {within:?} \
                         ({attempt} attempts); last failure: {failure}"
                    );
                }
                eprintln!(
                    "[testkit] {what} did not start again on port(s) {ports:?} (attempt \
                     {attempt}), trying again once they are free: {failure}"
                );
                while !ports.iter().all(|&p| bindable(p)) && Instant::now() < deadline {
                    std::thread::sleep(POLL);
                }
            }
        }
    }
    unreachable!("the loop returns or panics")
}

/// Waits until `child` listens on every one of `ports`, at most `within`, checking all along
/// that it has not exited. `log` reads what the child wrote so far (for the failure's
/// message, and to recognise "address in use").
///
/// Listening means, on Linux, that a socket of the child (or of a process it started) listens
/// on the port, read from `/proc`; elsewhere that a connection to 127.0.0.1 succeeds.
///
/// On failure the child is killed (if still running) and reaped; the failure says whether a
/// port was taken ([`StartFailure::PortTaken`]: the log says the address is in use, or
/// something else listens on the port), the child exited for another reason
/// ([`StartFailure::Exited`]), or it did not listen in time ([`StartFailure::Failed`]).
pub fn wait_listening(
    child: &mut Child,
    ports: &[u16],
    within: Duration,
    log: impl Fn() -> String,
) -> Result<(), StartFailure> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(exited(&status.to_string(), ports, &log())),
            Ok(None) => {}
            Err(e) => {
                stop(child);
                return Err(StartFailure::Failed(format!("cannot watch the child: {e}")));
            }
        }
        let pending: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|&port| !listens(child.id(), port))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            stop(child);
            let foreign = answering(&pending);
            let log = log();
            let tail = tail(&log);
            return Err(if !foreign.is_empty() {
                StartFailure::PortTaken(format!(
                    "something else listens on {foreign:?}, and the child did not within \
                     {within:?}; its log ends:\n{tail}"
                ))
            } else if says_address_in_use(&log) {
                StartFailure::PortTaken(format!(
                    "the child says its address is in use and did not listen on {pending:?} \
                     within {within:?}; its log ends:\n{tail}"
                ))
            } else {
                StartFailure::Failed(format!(
                    "the child did not listen on {pending:?} within {within:?}; its log \
                     ends:\n{tail}"
                ))
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Whether a log says that an address was in use: "Address already in use" (Linux's
/// EADDRINUSE, as Rust, nginx and ClickHouse print it), "Address in use", `AddrInUse`.
pub fn says_address_in_use(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    ["address already in use", "address in use", "addrinuse"]
        .iter()
        .any(|s| log.contains(s))
}

/// What a file holds from byte `offset` on (a log the child appends to; `offset` its length
/// before the child started), empty when it cannot be read.
pub fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The length of a file, 0 when it does not exist (yet).
pub fn length(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn exited(status: &str, ports: &[u16], log: &str) -> StartFailure {
    let foreign = answering(ports);
    let tail = tail(log);
    if says_address_in_use(log) {
        StartFailure::PortTaken(format!(
            "the child exited ({status}) saying its address is in use (port(s) {ports:?}); its \
             log ends:\n{tail}"
        ))
    } else if !foreign.is_empty() {
        StartFailure::PortTaken(format!(
            "the child exited ({status}) while something else listens on {foreign:?}; its log \
             ends:\n{tail}"
        ))
    } else {
        StartFailure::Exited(format!(
            "the child exited ({status}) before it listened on {ports:?}; its log ends:\n{tail}"
        ))
    }
}

/// Kills `child` and what it started (a SIGKILL of nginx's master alone leaves its workers
/// running), and reaps it.
fn stop(child: &mut Child) {
    let started = descendants(child.id());
    let _ = child.kill();
    for pid in started {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let _ = child.wait();
}

/// The ports of `ports` on which a connection to 127.0.0.1 succeeds.
fn answering(ports: &[u16]) -> Vec<u16> {
    ports
        .iter()
        .copied()
        .filter(|&port| {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_secs(1),
            )
            .is_ok()
        })
        .collect()
}

/// The last lines of a log, for a failure's message.
fn tail(log: &str) -> String {
    const LINES: usize = 20;
    const CHARS: usize = 4_000;
    let lines: Vec<&str> = log.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    if tail.len() > CHARS {
        let mut cut = tail.len() - CHARS;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = format!("…{}", &tail[cut..]);
    }
    if tail.trim().is_empty() {
        "(nothing)".to_string()
    } else {
        tail
    }
}

/// Whether process `pid` (or one it started) listens on `port`; where that cannot be read
/// (no `/proc`), whether anything answers on 127.0.0.1:`port`.
fn listens(pid: u32, port: u16) -> bool {
    owns_listener(pid, port).unwrap_or_else(|| !answering(&[port]).is_empty())
}

/// `Some(true)` when a listening socket on `port` belongs to `pid` or a descendant, read from
/// `/proc`; `None` when `/proc` cannot tell.
fn owns_listener(pid: u32, port: u16) -> Option<bool> {
    let listening = listening_inodes(port)?;
    // The child's own descriptors must be readable, or nothing can be told.
    let own = socket_inodes(pid)?;
    if listening.is_empty() {
        return Some(false);
    }
    if own.iter().any(|inode| listening.contains(inode)) {
        return Some(true);
    }
    Some(descendants(pid).into_iter().any(|p| {
        socket_inodes(p).is_some_and(|inodes| inodes.iter().any(|i| listening.contains(i)))
    }))
}

/// The inodes of the sockets listening on `port` (any local address, IPv4 and IPv6), from
/// `/proc/net/tcp{,6}`; `None` when neither can be read.
fn listening_inodes(port: u16) -> Option<BTreeSet<u64>> {
    const LISTEN: &str = "0A";
    let mut read_any = false;
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        read_any = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == LISTEN && local_port == Some(port) {
                if let Ok(inode) = inode.parse() {
                    inodes.insert(inode);
                }
            }
        }
    }
    read_any.then_some(inodes)
}

/// The inodes of the sockets process `pid` holds, from `/proc/<pid>/fd`; `None` when that
/// cannot be read.
fn socket_inodes(pid: u32) -> Option<BTreeSet<u64>> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|target| {
                target
                    .to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect(),
    )
}

/// The processes `pid` started, and theirs, from `/proc/<pid>/task/*/children` (empty where
/// `/proc` cannot be read).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !found.contains(&child) && found.len() < 1_000 {
                    found.push(child);
                    queue.push(child);
                }
            }
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Set for the child process these tests start: the port it binds.
    const CHILD_PORT: &str = "SHADOWDIFF_TESTKIT_CHILD_PORT";

    /// Not a test: the body of the child process the tests below start, this test binary run
    /// again with `CHILD_PORT` set. It binds 127.0.0.1:port (or, for `none`, binds nothing)
    /// and holds it until its stdin closes; when the bind fails it prints the error and exits
    /// 3, as a server does.
    #[test]
    #[ignore = "the child process of the tests below, not a test"]
    fn child_listener() {
        let Ok(port) = std::env::var(CHILD_PORT) else {
            return;
        };
        let _listener = match port.as_str() {
            "none" => None,
            port => match TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap())) {
                Ok(listener) => Some(listener),
                Err(e) => {
                    eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
                    std::process::exit(3);
                }
            },
        };
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
    }

    /// A child process running [`child_listener`] on `port` (`None`: it binds nothing), and
    /// its log; killed when dropped.
    #[derive(Debug)]
    struct Listener {
        child: Child,
        log: std::path::PathBuf,
    }

    impl Listener {
        fn spawn(port: Option<u16>) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let log = std::env::temp_dir().join(format!(
                "shadowdiff-testkit-{}-{}.log",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "ports::tests::child_listener",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    CHILD_PORT,
                    port.map_or("none".to_string(), |p| p.to_string()),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            Self { child, log }
        }

        fn log(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }

        fn wait(&mut self, port: u16, within: Duration) -> Result<(), StartFailure> {
            let log = self.log.clone();
            wait_listening(&mut self.child, &[port], within, move || {
                std::fs::read_to_string(&log).unwrap_or_default()
            })
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            stop(&mut self.child);
            let _ = std::fs::remove_file(&self.log);
        }
    }

    fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn free_port_never_returns_a_port_twice_and_each_was_bindable() {
        let ports: Vec<u16> = (0..300).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port came back twice");
        // From several threads at once too.
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<_>>()))
            .collect();
        let mut all = distinct;
        for thread in threads {
            for port in thread.join().unwrap() {
                assert!(all.insert(port), "port {port} came back twice");
            }
        }
        // Free when asked: nothing in this test holds them, so they bind.
        let last = free_port();
        assert!(TcpListener::bind(("127.0.0.1", last)).is_ok());
    }

    #[test]
    fn a_start_whose_port_is_in_use_is_retried_on_a_new_port() {
        let mut calls = Vec::new();
        let (port, started) = start_on_free_port("a server", |port| {
            calls.push(port);
            if calls.len() == 1 {
                Err(StartFailure::PortTaken(
                    "bind: Address already in use (os error 98)".into(),
                ))
            } else {
                Ok("up")
            }
        });
        assert_eq!(started, "up");
        assert_eq!(calls.len(), 2);
        assert_ne!(calls[0], calls[1], "the retry must use another port");
        assert_eq!(port, calls[1]);
    }

    #[test]
    fn a_start_that_always_fails_panics_after_the_bound_naming_what_ports_and_failure() {
        let mut calls = Vec::new();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            start_on_free_port("the flaky server", |port| -> Result<(), _> {
                calls.push(port);
                Err(StartFailure::PortTaken(format!("Address in use on {port}")))
            })
        }))
        .expect_err("it must panic");
        let message = panic_message(panicked);
        assert_eq!(calls.len(), START_ATTEMPTS);
        assert!(message.contains("the flaky server"), "{message}");
        for port in &calls {
            assert!(message.contains(&port.to_string()), "{port} in {message}");
        }
        let last = calls.last().unwrap();
        assert!(
            message.contains(&format!(
                "last failure: port taken: Address in use on {last}"
            )),
            "{message}"
        );
    }

    #[test]
    fn a_failure_that_another_port_would_not_help_is_not_retried() {
        let mut calls = 0;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            start_on_free_port("a broken server", |_| -> Result<(), _> {
                calls += 1;
                Err(StartFailure::Failed("no such binary".into()))
            })
        }))
        .expect_err("it must panic");
        assert_eq!(calls, 1);
        let message = panic_message(panicked);
        assert!(message.contains("a broken server") && message.contains("no such binary"));
    }

    /// A foreign listener on the port: the child fails to bind and exits saying so; that is
    /// recognised as a taken port, and the next attempt, on another port, succeeds.
    #[test]
    fn a_port_taken_by_a_foreign_listener_is_detected_and_the_child_moves() {
        let mut foreign = Vec::new();
        let mut failures = Vec::new();
        let (port, mut listener) = start_on_free_port("the child listener", |port| {
            if foreign.is_empty() {
                // Someone else takes the port between choosing it and the child binding it.
                foreign.push(TcpListener::bind(("127.0.0.1", port)).unwrap());
            }
            let mut listener = Listener::spawn(Some(port));
            match listener.wait(port, Duration::from_secs(30)) {
                Ok(()) => Ok(listener),
                Err(failure) => {
                    failures.push(failure.clone());
                    Err(failure)
                }
            }
        });
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            matches!(&failures[0], StartFailure::PortTaken(r) if says_address_in_use(r)),
            "{failures:?}"
        );
        let taken = foreign[0].local_addr().unwrap().port();
        assert_ne!(port, taken);
        // The child that started listens on the port itself.
        assert_eq!(owns_listener(listener.child.id(), port), Some(true));
        assert_eq!(owns_listener(listener.child.id(), taken), Some(false));
        assert!(
            listener.child.try_wait().unwrap().is_none(),
            "{}",
            listener.log()
        );
    }

    /// A child that never binds while something else answers on its port is not ready: the
    /// wait does not take the foreign listener for the child, and says the port is taken.
    #[test]
    fn a_foreign_listener_is_not_mistaken_for_the_child() {
        let port = free_port();
        let _foreign = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let mut listener = Listener::spawn(None);
        let started = Instant::now();
        let failure = listener
            .wait(port, Duration::from_millis(1_500))
            .expect_err("the child never listened");
        assert!(started.elapsed() >= Duration::from_millis(1_500));
        assert!(
            matches!(&failure, StartFailure::PortTaken(r) if r.contains("something else listens")),
            "{failure:?}"
        );
        // The child was stopped.
        assert!(listener.child.try_wait().unwrap().is_some());
    }

    /// A child that exits for another reason before it listens is reported as such, with its
    /// log, not waited on until the deadline.
    #[test]
    fn a_child_that_exits_early_is_reported_with_its_log() {
        // This child binds nothing and exits as soon as its stdin closes.
        let mut listener = Listener::spawn(None);
        let port = free_port();
        drop(listener.child.stdin.take());
        let failure = listener
            .wait(port, Duration::from_secs(30))
            .expect_err("the child exited");
        assert!(matches!(failure, StartFailure::Exited(_)), "{failure:?}");
    }

    /// A server started again on its own port after a kill binds it again.
    #[test]
    fn a_restart_on_the_same_port_succeeds_once_the_killed_child_let_go() {
        let (port, mut first) = start_on_free_port("the child listener", |port| {
            let mut l = Listener::spawn(Some(port));
            l.wait(port, Duration::from_secs(30)).map(|()| l)
        });
        stop(&mut first.child);
        let mut second = restart_on_ports(
            "the child listener",
            &[port],
            Duration::from_secs(30),
            |ports| {
                let mut l = Listener::spawn(Some(ports[0]));
                l.wait(ports[0], Duration::from_secs(30)).map(|()| l)
            },
        );
        assert_eq!(owns_listener(second.child.id(), port), Some(true));
        assert!(second.child.try_wait().unwrap().is_none());
    }

    /// A port that stays taken fails the restart at its deadline, naming it.
    #[test]
    fn a_restart_whose_port_stays_taken_fails_at_the_deadline() {
        let port = free_port();
        let _foreign = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let mut attempts = 0;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            restart_on_ports(
                "the restarted listener",
                &[port],
                Duration::from_secs(2),
                |ports| {
                    attempts += 1;
                    let mut l = Listener::spawn(Some(ports[0]));
                    l.wait(ports[0], Duration::from_secs(30)).map(|()| l)
                },
            )
        }))
        .expect_err("it must panic");
        let message = panic_message(panicked);
        assert!(attempts >= 1);
        assert!(
            message.contains("the restarted listener") && message.contains(&port.to_string()),
            "{message}"
        );
        assert!(says_address_in_use(&message), "{message}");
    }

    #[test]
    fn address_in_use_is_recognised_as_servers_word_it() {
        for log in [
            "Error: Os { code: 98, kind: AddrInUse, message: \"Address already in use\" }",
            "bind() to 127.0.0.1:8080 failed (98: Address already in use)",
            "<Error> Application: Net Exception: Address already in use: 127.0.0.1:9000",
            "listen tcp 127.0.0.1:80: bind: address in use",
        ] {
            assert!(says_address_in_use(log), "{log}");
        }
        assert!(!says_address_in_use("Connection refused (os error 111)"));
    }
}
