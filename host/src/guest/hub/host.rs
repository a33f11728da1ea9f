//! The `hub` interface as the guest sees it: the bindings' `Host`/`HostMember` traits,
//! implemented on [`HubView`], a view of one instance's resource table and [`HubCtx`].
//!
//! The 0.1.1 calls (`join`, `try-publish`, `try-set-name`) return a refusal as a
//! `hub-error`; the 0.1.0 ones trap on it, except `publish` over its budget, which drops
//! the message. Either way the hub counts and logs it.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, subscribe};

use super::{Hub, Member, Refused};
use crate::guest::bindings::switchboard::plugin::hub::{Host, HostMember, HubError};
use crate::guest::closer::Closer;
use crate::util::log_limit::LogLimiter;

/// What one connection's instance needs to join rooms.
pub(crate) struct HubCtx {
    /// The rooms of this host.
    pub(crate) hub: Hub,
    /// A new member's display name: the connection's peer address.
    pub(crate) name: String,
    /// Ends the connection when one of its memberships falls behind.
    pub(crate) closer: Closer,
    /// The memberships this instance holds.
    pub(crate) held: Arc<AtomicUsize>,
    /// The connection's span, for the hub's log lines about it.
    pub(crate) span: tracing::Span,
    /// The plugin's allowance of log lines (shared with its output), so one plugin's
    /// refusals never hide another's.
    pub(crate) log: Arc<LogLimiter>,
}

/// The hub's view of one instance: its resource table and, for a connection, its
/// [`HubCtx`]. `describe()` runs without one: joining a room there traps.
pub(crate) struct HubView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) ctx: Option<&'a HubCtx>,
}

/// Names [`HubView`] as the data the hub's bindings are added to the linker with.
pub(crate) struct HubAccess;

impl HasData for HubAccess {
    type Data<'a> = HubView<'a>;
}

impl From<Refused> for HubError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::NameTooLong => HubError::NameTooLong,
            Refused::MessageTooLarge => HubError::MessageTooLarge,
            Refused::TooManyMembers => HubError::TooManyMembers,
            Refused::OverBudget => HubError::OverBudget,
        }
    }
}

impl HubView<'_> {
    fn ctx(&self) -> wasmtime::Result<&HubCtx> {
        match self.ctx {
            Some(ctx) => Ok(ctx),
            None => wasmtime::bail!("hub rooms are for connections; describe() cannot join one"),
        }
    }

    /// Joins, or says why not; a full resource table traps.
    fn join_room(&mut self, room: &str) -> wasmtime::Result<Result<Resource<Member>, Refused>> {
        let ctx = self.ctx()?;
        match ctx.hub.join(room, ctx.name.clone(), ctx.closer.clone(), &ctx.held) {
            Ok(member) => Ok(Ok(self.table.push(member)?)),
            Err(why) => Ok(Err(counted(self.ctx, why, room))),
        }
    }

    fn publish_checked(&mut self, this: &Resource<Member>, msg: Vec<u8>) -> wasmtime::Result<Result<(), Refused>> {
        let ctx = self.ctx;
        let member = self.table.get_mut(this)?;
        Ok(member.try_publish(msg).map_err(|why| counted(ctx, why, member.room())))
    }

    fn rename(&mut self, this: &Resource<Member>, name: String) -> wasmtime::Result<Result<(), Refused>> {
        let member = self.table.get(this)?;
        Ok(member.set_name(name).map_err(|why| counted(self.ctx, why, member.room())))
    }

    /// The trap for a refusal in a 0.1.0 call.
    fn trap(&self, why: Refused) -> wasmtime::Error {
        let limits = self.ctx.map(|c| *c.hub.limits()).unwrap_or_default();
        wasmtime::format_err!("{}", why.trap_message(&limits))
    }
}

/// Counts and logs a refusal (for a connection) and hands it back.
fn counted(ctx: Option<&HubCtx>, why: Refused, room: &str) -> Refused {
    if let Some(ctx) = ctx {
        ctx.hub.refused(why, room, &ctx.span, &ctx.log);
    }
    why
}

impl Host for HubView<'_> {}

impl HostMember for HubView<'_> {
    fn new(&mut self, room: String) -> wasmtime::Result<Resource<Member>> {
        self.join_room(&room)?.map_err(|why| self.trap(why))
    }

    fn join(&mut self, room: String) -> wasmtime::Result<Result<Resource<Member>, HubError>> {
        Ok(self.join_room(&room)?.map_err(HubError::from))
    }

    fn publish(&mut self, this: Resource<Member>, msg: Vec<u8>) -> wasmtime::Result<()> {
        match self.publish_checked(&this, msg)? {
            // 0.1.0 has no way to report it: the message is dropped (counted and logged).
            Ok(()) | Err(Refused::OverBudget) => Ok(()),
            Err(why) => Err(self.trap(why)),
        }
    }

    fn try_publish(&mut self, this: Resource<Member>, msg: Vec<u8>) -> wasmtime::Result<Result<(), HubError>> {
        Ok(self.publish_checked(&this, msg)?.map_err(HubError::from))
    }

    fn subscribe(&mut self, this: Resource<Member>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, this)
    }

    fn try_recv(&mut self, this: Resource<Member>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.table.get(&this)?.try_recv().map(|b| b.to_vec()))
    }

    fn count(&mut self, this: Resource<Member>) -> wasmtime::Result<u32> {
        Ok(u32::try_from(self.table.get(&this)?.count()).unwrap_or(u32::MAX))
    }

    fn set_name(&mut self, this: Resource<Member>, name: String) -> wasmtime::Result<()> {
        self.rename(&this, name)?.map_err(|why| self.trap(why))
    }

    fn try_set_name(&mut self, this: Resource<Member>, name: String) -> wasmtime::Result<Result<(), HubError>> {
        Ok(self.rename(&this, name)?.map_err(HubError::from))
    }

    fn names(&mut self, this: Resource<Member>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&this)?.names())
    }

    fn drop(&mut self, this: Resource<Member>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
