//! Binding, serving and graceful shutdown.

use std::net::SocketAddr;

use poem::Server;
use poem::listener::TcpAcceptor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::{AppState, StartError};

/// A server running in the background; for the CLI's `serve` and for tests.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to the grace period), and waits.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Waits until the server ends by itself (after a signal).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves the app until `stop` is called or,
/// with `signals`, until SIGTERM or SIGINT.
pub async fn start(
    state: AppState,
    addr: SocketAddr,
    signals: bool,
) -> Result<Running, StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    let acceptor = TcpAcceptor::from_tokio(listener)
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    let grace = state.config.http.shutdown_grace;
    let housekeeping = spawn_housekeeping(state.clone());
    let logouts = spawn_logout_sender(state.clone());
    let app = crate::http::app(state);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            if signals {
                tokio::select! {
                    _ = rx => {},
                    _ = shutdown_signal() => {},
                }
            } else {
                let _ = rx.await;
            }
            tracing::info!("shutting down");
        };
        let result = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(grace))
            .await;
        housekeeping.abort();
        logouts.abort();
        result
    });
    Ok(Running {
        addr,
        stop: Some(tx),
        task,
    })
}

/// Every five minutes, deletes what has expired (codes, used assertion ids, ended sessions...).
/// Several instances may do it at once; the deletes are idempotent.
fn spawn_housekeeping(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = state.clock.now();
            match state.store.purge_expired(now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "expired records purged"),
                Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
            }
            let retention = state.config.audit.retention.as_secs();
            if retention > 0 {
                let before = now.saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX));
                match state.store.purge_audit_events(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "audit events past retention removed"),
                    Err(e) => tracing::warn!(error = %e, "removing old audit events failed"),
                }
            }
            // Self-registered clients nobody used for `registration.unused_expiry`.
            let unused = state.config.registration.unused_expiry.as_secs();
            if unused > 0 {
                let cutoff = now.saturating_sub(i64::try_from(unused).unwrap_or(i64::MAX));
                match state.store.purge_unused_clients(cutoff, now).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(clients = n, "unused self-registered clients removed"),
                    Err(e) => tracing::warn!(error = %e, "removing unused clients failed"),
                }
            }
        }
    })
}

/// Every two seconds, sends the back-channel logouts that are due (`logout`). Every instance
/// runs it; a delivery claimed by one is left alone by the others.
fn spawn_logout_sender(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Batches until none is due, so a burst (a user disabled) drains quickly.
            while state.logout_sender().deliver_due(state.clock.now()).await > 0 {}
        }
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
