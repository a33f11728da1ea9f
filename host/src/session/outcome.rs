//! [`Outcome`]: how a connection (or a datagram's call) ended, named from how the call
//! into the plugin ended and what the host knows about why.

use crate::instance::LimitHit;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `handle-connection` returned `ok`.
    Ok,
    /// It returned `err(message)`.
    Err(String),
    /// It trapped (message includes the wasm backtrace).
    Trap(String),
    /// A limit ended it (the message says how).
    Limit(LimitHit, String),
    /// The host closed it (reason given) and the plugin did not finish in time.
    Closed(String),
    /// The host could not start the plugin (the host's failure, not the plugin's).
    Failed(String),
}

impl Outcome {
    /// One word for how the conversation ended, as the access log shows it: `ok`,
    /// `error`, `trap`, `limit:KIND` (cpu, memory, idle, duration), `closed`, `failed`.
    pub fn kind(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Err(_) => "error".into(),
            Outcome::Trap(_) => "trap".into(),
            Outcome::Limit(hit, _) => format!("limit:{}", hit.name()).into(),
            Outcome::Closed(_) => "closed".into(),
            Outcome::Failed(_) => "failed".into(),
        }
    }
}

/// How the call into the plugin ended.
pub(crate) enum CallEnd<T> {
    /// The export returned.
    Returned(T),
    /// It trapped, or the host stopped it from inside (CPU budget).
    Failed(wasmtime::Error),
    /// The host gave up waiting for it (this says after what).
    Overdue(String),
}

/// Marks an error as the host's failure, not the plugin's: the host could not make the
/// instance (the pool or the kernel refused it), although the plugin did nothing wrong.
#[derive(Debug)]
pub(crate) struct HostFailed;

impl std::fmt::Display for HostFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host could not make an instance")
    }
}

/// Marks an instantiation error that is not a trap of the plugin's own code (its start
/// function, its initialisers) as [`HostFailed`].
pub(crate) fn instantiation_error(e: wasmtime::Error) -> wasmtime::Error {
    if e.downcast_ref::<wasmtime::Trap>().is_some() { e } else { e.context(HostFailed) }
}

/// What the host knows about the call besides how it ended.
#[derive(Debug, Default)]
pub(crate) struct Circumstances {
    /// A limit that ended (or asked to end) the instance: CPU, idle, duration.
    pub(crate) limit: Option<LimitHit>,
    /// A memory growth was refused (a trap is then the memory limit's doing).
    pub(crate) memory_refused: bool,
    /// The host asked the connection to close, and why.
    pub(crate) closed: Option<String>,
}

/// Names how a call ended: `Ok(value)` when it returned and nothing ended it, else the
/// [`Outcome`] that explains it.
pub(crate) fn classify<T>(end: CallEnd<T>, why: Circumstances) -> Result<T, Outcome> {
    match end {
        CallEnd::Returned(value) => match why.limit {
            Some(hit) => Err(Outcome::Limit(hit, "the plugin ended after the host closed the connection".into())),
            None => Ok(value),
        },
        CallEnd::Failed(e) => {
            let limit = why.limit.or(why.memory_refused.then_some(LimitHit::Memory));
            Err(match (limit, why.closed) {
                (Some(hit), _) => Outcome::Limit(hit, format!("{e:#}")),
                (None, _) if e.downcast_ref::<HostFailed>().is_some() => Outcome::Failed(format!("{e:#}")),
                (None, Some(reason)) => Outcome::Closed(reason),
                (None, None) => Outcome::Trap(format!("{e:?}")),
            })
        }
        CallEnd::Overdue(what) => Err(match why.limit {
            Some(hit) => Outcome::Limit(hit, what),
            None => Outcome::Closed(why.closed.unwrap_or_default()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trap() -> CallEnd<()> {
        CallEnd::Failed(wasmtime::format_err!("wasm trap: unreachable"))
    }

    #[test]
    fn each_ending_is_named_once() {
        assert_eq!(classify(CallEnd::Returned(7), Circumstances::default()), Ok(7));
        let cpu = || Circumstances { limit: Some(LimitHit::Cpu), ..Default::default() };
        assert!(matches!(classify(trap(), cpu()), Err(Outcome::Limit(LimitHit::Cpu, _))));
        let memory = Circumstances { memory_refused: true, ..Default::default() };
        assert!(matches!(classify(trap(), memory), Err(Outcome::Limit(LimitHit::Memory, _))));
        let closed = Circumstances { closed: Some("shutting down".into()), ..Default::default() };
        assert_eq!(classify(trap(), closed), Err(Outcome::Closed("shutting down".into())));
        assert!(matches!(classify(trap(), Circumstances::default()), Err(Outcome::Trap(_))));
        let idle = Circumstances { limit: Some(LimitHit::Idle), ..Default::default() };
        assert!(matches!(classify(CallEnd::Returned(()), idle), Err(Outcome::Limit(LimitHit::Idle, _))));
        let late =
            classify::<()>(CallEnd::Overdue("no answer".into()), Circumstances { limit: Some(LimitHit::Duration), ..Default::default() });
        assert_eq!(late, Err(Outcome::Limit(LimitHit::Duration, "no answer".into())));
        let host = CallEnd::<()>::Failed(instantiation_error(wasmtime::format_err!("mmap failed: Cannot allocate memory")));
        assert!(
            matches!(classify(host, Circumstances::default()), Err(Outcome::Failed(m)) if m.contains("mmap failed")),
            "the host's failure to instantiate is not the plugin's trap"
        );
        let start_trap = CallEnd::<()>::Failed(instantiation_error(wasmtime::Error::from(wasmtime::Trap::UnreachableCodeReached)));
        assert!(matches!(classify(start_trap, Circumstances::default()), Err(Outcome::Trap(_))), "a trap while starting is the plugin's");
        let memory_but_coped = Circumstances { memory_refused: true, ..Default::default() };
        assert_eq!(classify(CallEnd::Returned(()), memory_but_coped), Ok(()), "a plugin that coped with a refused growth did not fail");
    }
}
