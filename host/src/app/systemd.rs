//! systemd's service protocol (`sd_notify`): READY=1 once a plugin is served,
//! RELOADING=1 around a SIGHUP reload, STOPPING=1 at the drain, and WATCHDOG=1 when the
//! unit asks for a watchdog. Outside systemd (no `NOTIFY_SOCKET`) every call
//! does nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::control::registry::Registry;

/// How often readiness is looked at until the host is ready.
const READY_POLL: Duration = Duration::from_millis(250);

/// Sends `states` to the service manager; a failure is logged once (a broken
/// notification socket must not fill the log or stop the server).
pub(crate) fn notify(states: &[NotifyState]) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = sd_notify::notify(states)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}

/// RELOADING=1 with the monotonic time systemd 253+ requires beside it.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(e) => tracing::warn!("cannot read the monotonic clock for systemd's RELOADING=1: {e}"),
    }
}

/// Sends READY=1 once the first load is done and a plugin is served (a host serving
/// nothing never looks started; STATUS= says why and what is not served), then pets the
/// watchdog until `stop` if the unit set `WatchdogSec=`. `/readyz` is stricter: it wants
/// every configured plugin served.
pub(crate) async fn ready_when_served(registry: Arc<Registry>, stop: CancellationToken) {
    let mut last_status = String::new();
    loop {
        let served = registry.services().len();
        let status = match (served, registry.not_ready()) {
            (0, reason) => format!("not ready: {}", reason.unwrap_or_else(|| "no plugins are served".into())),
            (n, None) => format!("serving {n} plugins"),
            (n, Some(reason)) => format!("serving {n} plugins; {reason}"),
        };
        if status != last_status {
            if served > 0 {
                notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
                break;
            }
            notify(&[NotifyState::Status(&status)]);
            last_status = status;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(READY_POLL) => {}
        }
    }
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let mut ticks = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => notify(&[NotifyState::Watchdog]),
        }
    }
}
