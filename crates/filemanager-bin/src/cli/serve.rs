//! `filemanager serve`: binds, prepares the data directory, and runs the service until ctrl-c
//! or SIGTERM, then lets requests in flight finish (for at most the grace period).

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::config::{self, CommonArgs, DataDir, files};
use crate::http::{self, AppState, ServiceConfig};

/// Settings only the service uses.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Service API keys with full access, comma-separated; default: one generated in the data dir.
    #[arg(
        long,
        env = "FM_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Secret of HS256 user tokens (JWT); without it only service keys are accepted.
    #[arg(long, env = "FM_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Domains served, comma-separated; others get 404 unknown_domain. Default: all.
    #[arg(long, env = "FM_DOMAINS", value_delimiter = ',')]
    pub domains: Vec<String>,
    /// Origins allowed by CORS, comma-separated (`*` for any). Default: no CORS.
    #[arg(long, env = "FM_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Seconds requests in flight may take to finish after a shutdown signal.
    #[arg(long, env = "FM_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

/// Runs the service.
pub async fn run(common: &CommonArgs, args: ServeArgs) -> anyhow::Result<()> {
    init_logging();
    let data_dir = DataDir::open(&common.data_dir)?;
    let listener = TcpListener::bind(&common.listen)
        .await
        .with_context(|| format!("cannot listen on {}", common.listen))?;
    let addr = listener.local_addr()?;
    let storage = config::storage(&data_dir)?;
    let built = config::build(
        common,
        &data_dir,
        storage,
        config::base_url(common, &addr.to_string()),
        config::cache(&data_dir)?,
        config::large_files(&data_dir)?,
    )?;
    for note in &built.notes {
        tracing::info!("{note}");
    }
    // Staging files of uploads cut short by a crash; younger ones may be a CLI upload in
    // flight in the same directory, so only those older than FM_STALE_UPLOAD_SECS go.
    let stale_after = std::env::var("FM_STALE_UPLOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let sweeper = built.fm.clone();
    tokio::spawn(async move {
        let removed = sweeper
            .sweep_stale_uploads(std::time::Duration::from_secs(stale_after))
            .await;
        if removed > 0 {
            tracing::info!("removed {removed} staging file(s) of interrupted uploads");
        }
    });

    let mut api_keys: Vec<String> = args
        .api_keys
        .iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    if api_keys.is_empty() {
        let (key, created) = data_dir.secret(files::API_KEY)?;
        let path = data_dir.file(files::API_KEY);
        if created {
            tracing::info!(
                "created a service API key in {} (mode 0600); send it as 'Authorization: Bearer <key>'",
                path.display()
            );
        } else {
            tracing::info!("service API key: {}", path.display());
        }
        api_keys.push(key.to_string());
    }
    let state = AppState::new(
        built.fm.clone(),
        ServiceConfig {
            api_keys,
            jwt_secret: args.jwt_secret.filter(|s| !s.is_empty()),
            domains: args.domains,
            cors_origins: args.cors_origins,
        },
    )?;
    tracing::info!(
        "filemanager listening on http://{addr} (storage: {}, data dir: {})",
        built.fm.backend_name(),
        data_dir.path().display()
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        http::shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
    });
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let server = http::run(listener, http::router(state), stopped(stop_rx.clone()));
    tokio::select! {
        r = server => r.context("the server failed")?,
        () = async { stopped(stop_rx).await; tokio::time::sleep(grace).await } => {
            tracing::warn!("requests still running after {grace:?}; stopping anyway");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Logs to stderr, filtered by `FM_LOG` or `RUST_LOG` (e.g. `info`, `filemanager=debug`).
fn init_logging() {
    let filter = std::env::var("FM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}
