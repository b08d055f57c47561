//! Waiting for the operator's stop request: SIGTERM or SIGINT (Ctrl-C).

use tokio::signal::unix::{SignalKind, signal};

/// Resolves when SIGTERM or SIGINT arrives; returns the signal's name for the log.
pub async fn stop_requested() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}
