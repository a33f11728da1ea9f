//! The watchdog of one connection: the idle timeout and the maximum duration.

use std::time::Instant;

use crate::config::Limits;
use crate::guest::traffic::Activity;
use crate::instance::LimitHit;

/// Resolves with the first of the idle timeout or the maximum duration to expire.
pub(crate) async fn watchdog(activity: &Activity, limits: &Limits) -> LimitHit {
    loop {
        let idle_at = limits.idle_timeout.map(|t| activity.last() + t);
        let max_at = limits.max_duration.map(|t| activity.started() + t);
        let next = match (idle_at, max_at) {
            (None, None) => return std::future::pending().await,
            (Some(i), Some(m)) => i.min(m),
            (Some(i), None) => i,
            (None, Some(m)) => m,
        };
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        if max_at.is_some_and(|m| now >= m) {
            return LimitHit::Duration;
        }
        // Traffic may have moved the idle deadline while we slept. A plugin waiting for a
        // core (a loaded machine, the heavy lane) is running, not idle: the CPU budget,
        // which charges that wait, is what ends it if it spins.
        if limits.idle_timeout.is_some_and(|t| now >= activity.last() + t) {
            if activity.waiting_for_core() {
                activity.touch();
                continue;
            }
            return LimitHit::Idle;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_plugin_waiting_for_a_core_is_not_idle() {
        let activity = Activity::new();
        let limits = Limits { idle_timeout: Some(Duration::from_millis(50)), max_duration: None, ..Limits::default() };
        let waiting = activity.yielded();
        let watched = tokio::time::timeout(Duration::from_millis(300), watchdog(&activity, &limits)).await;
        assert!(watched.is_err(), "the idle timeout hit a plugin that was waiting for a core");
        drop(waiting);
        let watched = tokio::time::timeout(Duration::from_secs(2), watchdog(&activity, &limits)).await;
        assert_eq!(watched, Ok(LimitHit::Idle), "once it waits for nothing, the idle timeout applies again");
    }
}
