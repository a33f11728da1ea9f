//! Lanes: a connection whose plugin keeps the CPU busy moves to threads of its own that
//! run at the lowest scheduling priority, so connections that mostly wait on I/O never
//! queue behind it.
//!
//! Every connection starts on the server's async threads (the "light lane"). The epoch
//! callback [`promote`]s a guest whose poll used [`HELD`] of CPU time without its
//! connection moving a byte ([`at_tick`]); when the yield that follows ends,
//! [`Lanes::run`] hands the connection's future over to the "heavy lane": a second tokio runtime whose threads
//! are `SCHED_IDLE` (where the kernel allows it; `nice 19` otherwise). The kernel then
//! runs a heavy guest only when no other thread wants the core, and a thread that wakes
//! up preempts it at once. The move is one way: a connection that once spun stays in the
//! heavy lane until it ends. (A spinning guest is still charged for its CPU budget while
//! it waits for a core: see `store::yield_charged`.)
//!
//! A plugin whose connection just trapped or hit its CPU or memory limit is in
//! [`Quarantine`]: for [`QUARANTINE`] its new connections start in the heavy lane,
//! so a plugin that crashes over and over (each crash costs an instantiation, a trap and
//! a teardown) cannot crowd out the plugins that behave.
//!
//! Nothing is lost in the move: the future is polled on the new lane straight away, and
//! its sockets and timers stay registered with the runtime that created them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::util::clock;

tokio::task_local! {
    /// The promotion flag of the connection being polled.
    static FLAG: Arc<AtomicBool>;
}

/// How often the epoch ticks: a running guest yields to other connections at the first
/// tick that finds its poll older than [`HELD`] (so at least every `EPOCH_TICK + HELD`),
/// and is looked at by [`at_tick`] at every tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// A guest found running this long without a break at an epoch tick is suspected of
/// hogging its thread (an echo poll takes microseconds).
pub const HELD: Duration = Duration::from_micros(500);

/// What to do with a guest found running at an epoch tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Its poll has held the thread for [`HELD`] by the wall clock, which the kernel may
    /// have inflated by preempting the thread: time its next polls by CPU time.
    pub watch: bool,
    /// Its poll used [`HELD`] of CPU time: [`promote`] it.
    pub promote: bool,
    /// Its poll has held the thread for [`HELD`] by the wall clock: it yields to the other
    /// connections. A poll that began less than that ago is a guest that was suspended
    /// (waiting for input or a room message) when the tick came and has just resumed: its
    /// deadline went stale while it waited, it has held nothing, and a yield would only
    /// send it to the back of the queue once per wake-up.
    pub yields: bool,
}

/// Decides about a guest found running at an epoch tick: its poll under way has run
/// `running` by the wall clock, and `running_cpu` by CPU time if it was watched closely;
/// `moved_bytes` if its connection moved bytes since the previous tick that found it
/// running. A guest that moves bytes is serving its client (a bulk transfer) and stays
/// where it is: on idle-priority threads any other process on the machine would starve
/// it. One that burns CPU without moving a byte is spinning or computing.
pub(crate) fn at_tick(running: Duration, running_cpu: Option<Duration>, moved_bytes: bool) -> Tick {
    let yields = running >= HELD;
    if moved_bytes {
        return Tick { watch: false, promote: false, yields };
    }
    let promote = running_cpu.is_some_and(|cpu| cpu >= HELD);
    Tick { watch: !promote && yields, promote, yields }
}

/// How long a plugin's new connections start in the heavy lane after one of its
/// connections misbehaved.
pub const QUARANTINE: Duration = Duration::from_secs(10);

/// A plugin's quarantine: when it last misbehaved (trapped, or hit its CPU or memory
/// limit), so its new connections start in the heavy lane for [`QUARANTINE`].
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    /// [`clock::clock`] nanos of the last misbehaviour; 0: none.
    last: AtomicU64,
}

impl Quarantine {
    /// Starts (or extends) the quarantine now; true if it was not in force (for a log line).
    pub(crate) fn begin(&self) -> bool {
        let was = self.in_force();
        self.last.store(clock::clock(), Ordering::Relaxed);
        !was
    }

    /// Whether new connections should start in the heavy lane.
    pub(crate) fn in_force(&self) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => clock::clock().saturating_sub(last) < QUARANTINE.as_nanos() as u64,
        }
    }

    /// Ends the quarantine (a new version of the plugin was loaded).
    pub(crate) fn end(&self) {
        self.last.store(0, Ordering::Relaxed);
    }
}

/// Marks the connection being polled as heavy: it moves to the heavy lane at its next
/// yield. Does nothing outside [`Lanes::run`] (e.g. `describe()` calls).
pub(crate) fn promote() {
    let _ = FLAG.try_with(|flag| flag.store(true, Ordering::Relaxed));
}

/// How many of one plugin's connections went to the heavy lane, and why.
#[derive(Debug, Default)]
pub(crate) struct LaneMoves {
    /// Promoted: moved after their plugin spun.
    pub(crate) promoted: AtomicU64,
    /// Started there because their plugin was in quarantine.
    pub(crate) quarantined: AtomicU64,
}

/// The heavy lane: its own runtime, shut down (in the background) with the server.
pub(crate) struct Lanes {
    heavy: Option<tokio::runtime::Runtime>,
}

impl Lanes {
    /// A heavy lane of `threads` low-priority threads.
    pub(crate) fn new(threads: usize) -> std::io::Result<Lanes> {
        let heavy = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("heavy-lane")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Lanes { heavy: Some(heavy) })
    }

    /// No heavy lane: every connection stays where it starts.
    pub(crate) fn single() -> Lanes {
        Lanes { heavy: None }
    }

    /// Runs `connection` on the light lane, moving it to the heavy lane once its plugin
    /// is [`promote`]d; or on the heavy lane from the start if `quarantined`. Each move
    /// is counted in `moves`.
    pub(crate) fn run<F>(&self, connection: F, quarantined: bool, moves: &Arc<LaneMoves>) -> Laned<F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        Laned {
            connection: Some(Box::pin(connection)),
            flag: Arc::new(AtomicBool::new(quarantined)),
            quarantined,
            moves: moves.clone(),
            heavy: self.heavy.as_ref().map(|rt| rt.handle().clone()),
            moved: None,
        }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        if let Some(rt) = self.heavy.take() {
            // Dropping a runtime inside an async context would panic; connections still
            // on it are being dropped with the server anyway.
            rt.shutdown_background();
        }
    }
}

/// A connection's future that may move to the heavy lane; see [`Lanes::run`].
pub(crate) struct Laned<F> {
    connection: Option<Pin<Box<F>>>,
    flag: Arc<AtomicBool>,
    /// It starts in the heavy lane (rather than being promoted there).
    quarantined: bool,
    moves: Arc<LaneMoves>,
    heavy: Option<tokio::runtime::Handle>,
    moved: Option<JoinHandle<()>>,
}

impl<F: Future<Output = ()> + Send + 'static> Future for Laned<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some(moved) = &mut this.moved {
            return match Pin::new(moved).poll(cx) {
                Poll::Ready(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                // Cancelled: the heavy lane was shut down with the server.
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            };
        }
        let Some(connection) = this.connection.as_mut() else { return Poll::Ready(()) };
        // Quarantined, or promoted during the last poll (which ended in a yield, so this
        // poll comes at once): go on in the heavy lane.
        if this.heavy.is_some() && this.flag.load(Ordering::Relaxed) {
            return this.move_to_heavy(cx);
        }
        if FLAG.sync_scope(this.flag.clone(), || connection.as_mut().poll(cx)).is_ready() {
            this.connection = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<F: Future<Output = ()> + Send + 'static> Laned<F> {
    /// The connection's lane flag: set once it runs in (or is moving to) the heavy lane.
    pub(crate) fn heavy_flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Hands the connection to the heavy lane and waits for it there.
    fn move_to_heavy(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (Some(heavy), Some(connection)) = (self.heavy.as_ref(), self.connection.take()) else { return Poll::Ready(()) };
        tracing::debug!("moved to the heavy lane");
        let why = if self.quarantined { &self.moves.quarantined } else { &self.moves.promoted };
        why.fetch_add(1, Ordering::Relaxed);
        // The flag stays set: on the heavy lane there is nowhere further to go.
        self.moved = Some(heavy.spawn(FLAG.scope(self.flag.clone(), connection)));
        Pin::new(self).poll(cx)
    }
}

impl<F> Drop for Laned<F> {
    fn drop(&mut self) {
        // Whoever gave up on the connection gave up on its heavy-lane half too.
        if let Some(moved) = &self.moved {
            moved.abort();
        }
    }
}

/// Puts the calling thread at the lowest priority the kernel lets us set: `SCHED_IDLE`
/// (a thread of any other policy that wakes up preempts it at once), else `nice 19`.
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread (pid 0) with a local parameter struct.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that promotes itself moves to a heavy-lane thread; one that does not
    /// stays where it started.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_promoted_connection_moves_to_the_heavy_lane() {
        let lanes = Lanes::new(1).unwrap();
        let moves = Arc::new(LaneMoves::default());
        let thread_name = || std::thread::current().name().unwrap_or_default().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        lanes
            .run(
                async move {
                    let before = thread_name();
                    promote();
                    tokio::task::yield_now().await;
                    let _ = tx.send((before, thread_name()));
                },
                false,
                &moves,
            )
            .await;
        let (before, after) = rx.await.unwrap();
        assert_ne!(before, "heavy-lane");
        assert_eq!(after, "heavy-lane");

        let (tx, rx) = tokio::sync::oneshot::channel();
        lanes
            .run(
                async move {
                    tokio::task::yield_now().await;
                    let _ = tx.send(thread_name());
                },
                false,
                &moves,
            )
            .await;
        assert_ne!(rx.await.unwrap(), "heavy-lane");

        let (tx, rx) = tokio::sync::oneshot::channel();
        lanes
            .run(
                async move {
                    let _ = tx.send(thread_name());
                },
                true,
                &moves,
            )
            .await;
        assert_eq!(rx.await.unwrap(), "heavy-lane", "a quarantined plugin's connection starts there");
        assert_eq!(
            (moves.promoted.load(Ordering::Relaxed), moves.quarantined.load(Ordering::Relaxed)),
            (1, 1),
            "each move is counted once"
        );
    }

    const T: Duration = EPOCH_TICK;

    #[test]
    fn a_long_poll_is_watched_and_promoted_only_if_it_really_used_the_cpu() {
        let tick = at_tick(T, None, false);
        assert!(tick.watch && !tick.promote, "long by the wall clock: watch it");
        let tick = at_tick(T, Some(HELD / 10), false);
        assert!(tick.watch && !tick.promote, "preempted, not busy: keep watching, do not promote");
        let tick = at_tick(HELD / 10, Some(HELD / 20), false);
        assert!(!tick.watch && !tick.promote, "short again");
        let tick = at_tick(T, Some(T), false);
        assert!(tick.promote && !tick.watch, "busy by its CPU clock");
        let tick = at_tick(T, Some(T), true);
        assert!(!tick.promote && !tick.watch, "a busy transfer is not a spin");
    }

    #[test]
    fn a_guest_that_just_resumed_goes_on_and_one_that_held_its_thread_yields() {
        assert!(!at_tick(HELD / 100, None, false).yields, "woken up just now: its deadline was stale");
        assert!(!at_tick(HELD / 100, None, true).yields);
        assert!(at_tick(HELD, None, false).yields, "held its thread");
        assert!(at_tick(T, Some(T), true).yields, "a busy transfer yields too");
        assert!(at_tick(T, Some(T), false).yields, "and a spin");
    }

    #[test]
    fn misbehaviour_starts_a_quarantine_that_a_new_version_ends() {
        let quarantine = Quarantine::default();
        assert!(!quarantine.in_force());
        assert!(quarantine.begin(), "the first misbehaviour starts it");
        assert!(!quarantine.begin(), "the next ones extend it");
        assert!(quarantine.in_force());
        quarantine.end();
        assert!(!quarantine.in_force());
    }

    /// Outside a lane, promote() is harmless; with a single lane nothing moves.
    #[tokio::test]
    async fn promote_outside_a_lane_and_a_single_lane_are_harmless() {
        promote();
        let lanes = Lanes::single();
        let moves = Arc::new(LaneMoves::default());
        lanes
            .run(
                async {
                    promote();
                    tokio::task::yield_now().await;
                    assert_ne!(std::thread::current().name(), Some("heavy-lane"));
                },
                true,
                &moves,
            )
            .await;
        assert_eq!(moves.quarantined.load(Ordering::Relaxed), 0, "nothing moved, nothing counted");
    }
}
