//! `shadowdiff sandbox`: the standalone egress sandbox.

use crate::process::{first_signal, runtime, LogArgs};
use anyhow::Context;
use clap::Args;
use shadowdiff_pipeline::admin::{start_admin, ReadyCheck};
use shadowdiff_pipeline::init_logging;
use shadowdiff_sandbox::{Canned, Sandbox, SandboxConfig, SideEffectLog};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct SandboxArgs {
    /// Address of the forward proxy; point candidates' HTTP_PROXY and HTTPS_PROXY at it. It also
    /// answers GET /side-effects/{exchange_id} (JSON list) for replayers with replay.sandbox_url
    /// (loopback peers only unless --lookup-any-peer).
    #[arg(
        long,
        env = "SHADOWDIFF_SANDBOX_LISTEN",
        default_value = "127.0.0.1:3128"
    )]
    pub listen: String,
    /// Host that reads (GET, HEAD, OPTIONS) may reach: `host` (any port), `host:port` (that port
    /// only), `[::1]:port` or `*.domain`. Repeat for several. Writes are never passed on.
    #[arg(
        long = "allow",
        value_name = "HOST",
        env = "SHADOWDIFF_SANDBOX_ALLOW",
        value_delimiter = ','
    )]
    pub allow: Vec<String>,
    /// Host declared write-safe, which CONNECT (HTTPS) may tunnel to; same forms as --allow.
    /// A tunnel is opaque: writes inside it are neither blocked nor recorded. CONNECT to any
    /// other host is refused (403) and recorded. Repeat for several.
    #[arg(
        long = "allow-tunnel",
        value_name = "HOST",
        env = "SHADOWDIFF_SANDBOX_ALLOW_TUNNEL",
        value_delimiter = ','
    )]
    pub allow_tunnel: Vec<String>,
    /// Answer GET /side-effects/{exchange_id} to every peer. By default only 127.0.0.1 and ::1
    /// get it (others 403): the list shows what candidates tried to write. Needed when the
    /// replayer (replay.sandbox_url) runs on another host.
    #[arg(long, env = "SHADOWDIFF_SANDBOX_LOOKUP_ANY_PEER")]
    pub lookup_any_peer: bool,
    /// Canned responses (method + host + path → status, headers, body), TOML or JSON (.json).
    #[arg(long, value_name = "FILE", env = "SHADOWDIFF_SANDBOX_CANNED")]
    pub canned: Option<PathBuf>,
    /// Status of the answer to a blocked write.
    #[arg(long, default_value_t = 403)]
    pub block_status: u16,
    /// Header carrying the exchange id; candidates must forward it on their outbound calls.
    #[arg(long, default_value = "x-shadow-exchange-id")]
    pub exchange_id_header: String,
    /// Seconds a recorded side effect is kept for replayers to collect.
    #[arg(long, default_value_t = 300)]
    pub log_ttl_secs: u64,
    /// Exchanges the side-effect log holds at most.
    #[arg(long, default_value_t = 100_000)]
    pub log_capacity: usize,
    /// Time an allowlisted host has to answer, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,
    /// Admin address for /metrics, /healthz, /readyz; "" disables.
    #[arg(long, env = "SHADOWDIFF_ADMIN", default_value = "127.0.0.1:9465")]
    pub admin: String,
    /// Time open connections have after SIGTERM, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    #[command(flatten)]
    pub log: LogArgs,
}

pub(crate) fn sandbox(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log.log_format.into());
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen `{}` is not an address with a port, such as 127.0.0.1:3128",
            args.listen
        )
    })?;
    let admin: Option<SocketAddr> = if args.admin.is_empty() {
        None
    } else {
        Some(args.admin.parse().with_context(|| {
            format!(
                "--admin `{}` is not an address with a port, such as 127.0.0.1:9465",
                args.admin
            )
        })?)
    };
    if args.log_ttl_secs == 0 || args.log_capacity == 0 {
        anyhow::bail!("--log-ttl-secs and --log-capacity must be greater than 0");
    }
    let canned = match &args.canned {
        Some(path) => Canned::from_file(path)?,
        None => Canned::default(),
    };
    let ttl = Duration::from_secs(args.log_ttl_secs);
    let log = SideEffectLog::new(ttl, args.log_capacity);
    let sandbox = Sandbox::new(
        SandboxConfig {
            allow: args.allow.clone(),
            allow_tunnel: args.allow_tunnel.clone(),
            lookup_any_peer: args.lookup_any_peer,
            canned,
            block_status: args.block_status,
            exchange_id_header: args.exchange_id_header.clone(),
            upstream_timeout: Duration::from_millis(args.upstream_timeout_ms.max(1)),
        },
        log.clone(),
    )
    .context("invalid sandbox settings")?;
    runtime()?.block_on(async move {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let wait = move || {
            let mut rx = stop_rx.clone();
            async move {
                while !*rx.borrow() {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        };
        let (bound, task) = shadowdiff_sandbox::start(
            listen,
            sandbox,
            wait(),
            Duration::from_millis(args.shutdown_grace_ms),
        )
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
        let admin_addr = match admin {
            Some(addr) => {
                let checks = vec![ReadyCheck::tcp("proxy", bound.to_string())];
                let (a, _task) = start_admin(addr, checks, wait())
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                Some(a)
            }
            None => None,
        };
        // Expired entries go even when nobody asks for them.
        let purge_log = log.clone();
        let purge = tokio::spawn(async move {
            let mut tick = tokio::time::interval((ttl / 2).max(Duration::from_secs(1)));
            loop {
                tick.tick().await;
                purge_log.purge_expired();
            }
        });
        tracing::info!(
            proxy = %bound,
            admin = ?admin_addr,
            allow = ?args.allow,
            allow_tunnel = ?args.allow_tunnel,
            lookup_any_peer = args.lookup_any_peer,
            "Sandbox running; set the candidates' HTTP_PROXY to it. SIGTERM or Ctrl-C drains and stops."
        );
        first_signal().await;
        tracing::info!("Draining.");
        let _ = stop.send(true);
        let _ = task.await;
        purge.abort();
        tracing::info!(recorded = log.len(), refused = log.refused(), "Stopped.");
        Ok(ExitCode::SUCCESS)
    })
}
