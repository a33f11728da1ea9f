//! The `hub` interface as the guest sees it: the bindings' `Host`/`HostMember` traits,
//! implemented on [`HubView`], a view of one instance's resource table and [`HubCtx`].

use bytes::Bytes;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, subscribe};

use super::{Hub, Member};
use crate::guest::bindings::switchboard::plugin::hub::{Host, HostMember};
use crate::guest::closer::Closer;

/// What one connection's instance needs to join rooms.
pub(crate) struct HubCtx {
    /// The rooms of this host.
    pub(crate) hub: Hub,
    /// A new member's display name: the connection's peer address.
    pub(crate) name: String,
    /// Ends the connection when one of its memberships falls behind.
    pub(crate) closer: Closer,
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

impl Host for HubView<'_> {}

impl HostMember for HubView<'_> {
    fn new(&mut self, room: String) -> wasmtime::Result<Resource<Member>> {
        let Some(ctx) = self.ctx else {
            wasmtime::bail!("hub rooms are for connections; describe() cannot join one");
        };
        let member = ctx.hub.join(&room, ctx.name.clone(), ctx.closer.clone());
        Ok(self.table.push(member)?)
    }

    fn publish(&mut self, this: Resource<Member>, msg: Vec<u8>) -> wasmtime::Result<()> {
        let member = self.table.get(&this)?;
        if msg.len() > member.limits.max_message {
            wasmtime::bail!("hub message of {} bytes exceeds the limit of {} bytes", msg.len(), member.limits.max_message);
        }
        member.publish(Bytes::from(msg));
        Ok(())
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
        self.table.get(&this)?.set_name(name);
        Ok(())
    }

    fn names(&mut self, this: Resource<Member>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&this)?.names())
    }

    fn drop(&mut self, this: Resource<Member>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
