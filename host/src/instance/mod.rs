//! Instances: the engine and its pool ([`runtime`]), loading a plugin file into a
//! validated, described component ([`plugin`], [`cache`], [`info`]: the bounds on what it
//! may say about itself), and one instance's Store with
//! what it is granted and the meters it runs under ([`store`], [`live`], [`limits`],
//! [`cpu`], [`lane`], [`grants`]; [`meters`] shows them to the connection table); whether the kernel can hold the pool ([`capacity`]).

pub(crate) mod cache;
pub mod capacity;
pub(crate) mod cpu;
pub(crate) mod grants;
pub mod info;
pub(crate) mod lane;
pub(crate) mod limits;
pub(crate) mod live;
pub(crate) mod meters;
pub(crate) mod plugin;
pub(crate) mod runtime;
pub(crate) mod store;

pub use capacity::CapacityError;
pub use info::InfoError;
pub use limits::LimitHit;
pub use plugin::LoadError;
