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
        // Traffic may have moved the idle deadline while we slept.
        if limits.idle_timeout.is_some_and(|t| now >= activity.last() + t) {
            return LimitHit::Idle;
        }
    }
}
