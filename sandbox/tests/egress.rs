//! The sandbox's egress defences over real sockets on loopback: what the check sees is what the
//! connection reaches, tunnels need a write-safe declaration, and the side-effect lookup answers
//! loopback peers only unless opted in.
#![allow(clippy::unwrap_used)]

use shadowdiff_sandbox::{Sandbox, SandboxConfig, SideEffectLog};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A plain HTTP server on 127.0.0.1 that counts the connections it accepted and answers
/// `200 reached` to each request head.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nreached",
                        )
                        .await;
                });
            }
        });
        Self { addr, accepted }
    }

    /// Connections accepted, after giving a stray one time to arrive.
    async fn accepted(&self) -> usize {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn sandbox(config: SandboxConfig) -> (SocketAddr, SideEffectLog) {
    let log = SideEffectLog::new(Duration::from_secs(60), 100);
    let sandbox = Sandbox::new(config, log.clone()).unwrap();
    let (addr, _task) = shadowdiff_sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        sandbox,
        std::future::pending::<()>(),
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    (addr, log)
}

/// Sends raw bytes from a socket bound to `from` and returns everything the sandbox answered
/// until it closed.
async fn raw_from(from: &str, to: SocketAddr, request: &str) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn raw(to: SocketAddr, request: &str) -> String {
    raw_from("127.0.0.1", to, request).await
}

fn get(target: &str, id: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\nx-shadow-exchange-id: {id}\r\nConnection: close\r\n\r\n")
}

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Sends `CONNECT target` and returns the status line's code, leaving the tunnel (if any) open.
async fn connect(to: SocketAddr, target: &str, id: &str) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nx-shadow-exchange-id: {id}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    (status(&String::from_utf8_lossy(&buf[..n])), s)
}

#[tokio::test]
async fn userinfo_in_the_target_never_reaches_the_host_after_the_at() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let (proxy, log) = sandbox(SandboxConfig {
        allow: vec!["localhost".into()],
        ..SandboxConfig::default()
    })
    .await;
    for (i, target) in [
        format!("http://localhost:1@127.0.0.1:{port}/"),
        format!("http://localhost@127.0.0.1:{port}/"),
        format!("http://user:pass@127.0.0.1:{port}/"),
    ]
    .iter()
    .enumerate()
    {
        let id = format!("u{i}");
        let answer = raw(proxy, &get(target, &id)).await;
        assert!(matches!(status(&answer), 400 | 403), "{target}: {answer}");
        assert!(!answer.contains("reached"), "{target}: {answer}");
        // Recorded as blocked, under the host the connection would have gone to.
        let recorded = log.get(&id);
        assert_eq!(recorded.len(), 1, "{target}: {recorded:?}");
        assert!(
            recorded[0].starts_with("GET 127.0.0.1/") && recorded[0].contains("userinfo"),
            "{recorded:?}"
        );
    }
    assert_eq!(
        upstream.accepted().await,
        0,
        "the server after `@` was reached"
    );
}

#[tokio::test]
async fn an_allowlisted_port_admits_that_port_only() {
    let allowed = Upstream::start().await;
    let other = Upstream::start().await;
    let (proxy, _log) = sandbox(SandboxConfig {
        allow: vec![format!("127.0.0.1:{}", allowed.addr.port())],
        ..SandboxConfig::default()
    })
    .await;
    let port = other.addr.port();
    for target in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1.:{port}/"),
        format!("http://127.0.0.1:{}@127.0.0.1:{port}/", allowed.addr.port()),
    ] {
        let answer = raw(proxy, &get(&target, "p")).await;
        assert!(matches!(status(&answer), 400 | 403), "{target}: {answer}");
    }
    assert_eq!(
        other.accepted().await,
        0,
        "a port off the allowlist was reached"
    );
    let answer = raw(
        proxy,
        &get(&format!("http://127.0.0.1:{}/", allowed.addr.port()), "p"),
    )
    .await;
    assert!(answer.ends_with("reached"), "{answer}");
}

#[tokio::test]
async fn odd_spellings_of_an_allowlisted_host_reach_that_host() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let (proxy, _log) = sandbox(SandboxConfig {
        allow: vec![format!("127.0.0.1:{port}")],
        ..SandboxConfig::default()
    })
    .await;
    // A trailing dot is the same host: the check and the connection both use the parsed form.
    let answer = raw(proxy, &get(&format!("http://127.0.0.1.:{port}/"), "o")).await;
    assert!(answer.ends_with("reached"), "{answer}");
    // Spellings a resolver may read as another address are refused, not guessed at.
    for target in [
        format!("http://127.1:{port}/"),
        format!("http://127.0.0.1%2e:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
    ] {
        let answer = raw(proxy, &get(&target, "o")).await;
        assert!(matches!(status(&answer), 400 | 403), "{target}: {answer}");
    }
    assert_eq!(upstream.accepted().await, 1);
}

#[tokio::test]
async fn a_blocked_write_is_recorded_under_the_host_actually_targeted() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let (proxy, log) = sandbox(SandboxConfig::default()).await;
    let post = |target: String, id: &str| {
        format!("POST {target} HTTP/1.1\r\nHost: payments.internal\r\nx-shadow-exchange-id: {id}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
    };
    let answer = raw(
        proxy,
        &post(
            format!("http://payments.internal@127.0.0.1:{port}/charges"),
            "w1",
        ),
    )
    .await;
    assert!(matches!(status(&answer), 400 | 403), "{answer}");
    let recorded = log.get("w1");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].starts_with("POST 127.0.0.1/charges"),
        "{recorded:?}"
    );
    assert!(!recorded[0].contains("payments"), "{recorded:?}");
    // Case and a trailing dot do not make another host in the report.
    let answer = raw(
        proxy,
        &post("http://PAYMENTS.Internal./charges".into(), "w2"),
    )
    .await;
    assert_eq!(status(&answer), 403, "{answer}");
    assert_eq!(log.get("w2"), vec!["POST payments.internal/charges"]);
    assert_eq!(upstream.accepted().await, 0);
}

#[tokio::test]
async fn connect_to_an_allowlisted_host_is_refused_by_default() {
    let upstream = Upstream::start().await;
    let (proxy, log) = sandbox(SandboxConfig {
        allow: vec![upstream.addr.to_string()],
        ..SandboxConfig::default()
    })
    .await;
    let (code, _s) = connect(proxy, &upstream.addr.to_string(), "c1").await;
    assert_eq!(code, 403);
    let recorded = log.get("c1");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].starts_with(&format!("CONNECT {}", upstream.addr)),
        "{recorded:?}"
    );
    assert_eq!(upstream.accepted().await, 0, "a tunnel was opened");
}

#[tokio::test]
async fn the_side_effect_lookup_refuses_other_peers_by_default() {
    let (proxy, _log) = sandbox(SandboxConfig::default()).await;
    let post = "POST http://payments.internal/charges HTTP/1.1\r\nHost: payments.internal\r\nx-shadow-exchange-id: e1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(status(&raw(proxy, post).await), 403);
    let lookup = "GET /side-effects/e1 HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n";
    // 127.0.0.2 stands in for another machine (Linux routes all of 127/8 to lo); the lookup
    // answers the loopback addresses 127.0.0.1 and ::1 only.
    let answer = raw_from("127.0.0.2", proxy, lookup).await;
    assert_eq!(status(&answer), 403, "{answer}");
    assert!(!answer.contains("payments"), "{answer}");
    let answer = raw(proxy, lookup).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        answer.ends_with(r#"["POST payments.internal/charges"]"#),
        "{answer}"
    );
}

#[tokio::test]
async fn connect_tunnels_only_to_hosts_declared_write_safe() {
    let upstream = Upstream::start().await;
    let other = Upstream::start().await;
    let (proxy, log) = sandbox(SandboxConfig {
        allow_tunnel: vec![upstream.addr.to_string()],
        ..SandboxConfig::default()
    })
    .await;
    let (code, mut s) = connect(proxy, &upstream.addr.to_string(), "t1").await;
    assert_eq!(code, 200);
    s.write_all(b"GET /in-tunnel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&out).ends_with("reached"));
    assert!(
        log.get("t1").is_empty(),
        "a permitted tunnel is not a side effect"
    );
    // Same host, another port: not declared.
    let (code, _s) = connect(proxy, &other.addr.to_string(), "t2").await;
    assert_eq!(code, 403);
    assert_eq!(other.accepted().await, 0);
    assert_eq!(log.get("t2").len(), 1);
    // Userinfo is refused on CONNECT too.
    let (code, _s) = connect(proxy, &format!("x@{}", upstream.addr), "t3").await;
    assert_eq!(code, 403);
    assert_eq!(upstream.accepted().await, 1);
}

#[tokio::test]
async fn the_side_effect_lookup_serves_other_peers_when_opted_in() {
    let (proxy, _log) = sandbox(SandboxConfig {
        lookup_any_peer: true,
        ..SandboxConfig::default()
    })
    .await;
    let post = "POST http://payments.internal/charges HTTP/1.1\r\nHost: payments.internal\r\nx-shadow-exchange-id: e2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(status(&raw(proxy, post).await), 403);
    let answer = raw_from(
        "127.0.0.2",
        proxy,
        "GET /side-effects/e2 HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        answer.ends_with(r#"["POST payments.internal/charges"]"#),
        "{answer}"
    );
}

#[tokio::test]
async fn a_passed_read_carries_the_checked_host_not_the_received_one() {
    // The upstream echoes the Host it got.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                let host = head
                    .lines()
                    .find_map(|l| l.strip_prefix("host: "))
                    .unwrap_or("")
                    .to_string();
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{host}",
                            host.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    let (proxy, _log) = sandbox(SandboxConfig {
        allow: vec![addr.to_string()],
        ..SandboxConfig::default()
    })
    .await;
    let answer = raw(
        proxy,
        &format!(
            "GET http://{addr}/ HTTP/1.1\r\nHost: payments.internal\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.ends_with(&format!("\r\n\r\n{addr}")), "{answer}");
}
