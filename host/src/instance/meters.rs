//! [`Meters`]: a window onto one live conversation's traffic clock and CPU meter, for
//! readers outside it (the connection table). The session fills it in once its instance
//! exists; reading it costs a few relaxed atomic loads and never touches the hot path.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::cpu::CpuMeter;
use crate::guest::traffic::Activity;

/// What a conversation has moved and used so far; empty until its instance starts.
#[derive(Debug, Default)]
pub(crate) struct Meters(OnceLock<(Arc<Activity>, Arc<CpuMeter>)>);

impl Meters {
    /// Attaches the conversation's meters (the first call wins).
    pub(crate) fn attach(&self, activity: Arc<Activity>, cpu: Arc<CpuMeter>) {
        let _ = self.0.set((activity, cpu));
    }

    /// Bytes read from the peer so far.
    pub(crate) fn bytes_in(&self) -> u64 {
        self.0.get().map_or(0, |(a, _)| a.bytes_in())
    }

    /// Bytes written to the peer so far.
    pub(crate) fn bytes_out(&self) -> u64 {
        self.0.get().map_or(0, |(a, _)| a.bytes_out())
    }

    /// CPU charged to the conversation so far (see [`CpuMeter::used`]).
    pub(crate) fn cpu(&self) -> Duration {
        self.0.get().map_or(Duration::ZERO, |(_, c)| c.used())
    }
}
