//! [`Backoff`]: pauses that double on each repeat, up to a cap, and start over after a
//! success (accept and receive errors, a vanished serial device, a plugin that returns
//! at once).

use std::time::Duration;

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Pauses from `min`, doubled on each repeat, never over `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, next: min }
    }

    /// The pause to take now; the next one will be twice as long (up to the cap).
    pub fn next_pause(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// Back to the shortest pause (it worked).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_a_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(5), ms(30));
        let taken: Vec<_> = (0..5).map(|_| b.next_pause()).collect();
        assert_eq!(taken, [ms(5), ms(10), ms(20), ms(30), ms(30)]);
        b.reset();
        assert_eq!(b.next_pause(), ms(5));
    }
}
