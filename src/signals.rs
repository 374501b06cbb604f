//! The signals that stop herald: SIGTERM (systemd, Kubernetes) and SIGINT
//! (a terminal). Either one starts a graceful shutdown.

use tokio::signal::unix::{SignalKind, signal};

/// Waits for SIGTERM or SIGINT and returns its name.
///
/// # Errors
/// When a handler cannot be installed (not expected on Linux).
pub async fn terminate() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
