//! Control: keeping the served plugins in step with their files — where plugins come
//! from ([`sources`]), what is served and how a change is applied ([`registry`]), and
//! following the files ([`watch`]).

pub(crate) mod registry;
pub(crate) mod sources;
pub(crate) mod watch;

pub use registry::ReloadError;
