//! Bindings for the `tls-full-plugin` world (full-plugin's exports; its imports and `tls`);
//! owner of the imported interfaces (types, hub, tls, wasi:io) that the other world crates
//! reuse. A plugin that never asks for its TLS session imports no `tls` (the component keeps
//! only the imports its code calls), so it loads like a plain full-plugin.
//!
//! Each world lives in its own crate because wit-bindgen names its per-interface export
//! macros after the interface alone: two worlds exporting `handler` cannot share a crate.
//! The export macro is public and emits the world's type section in the plugin crate, so a
//! component claims exactly the exports of the world it was exported as.
#![allow(missing_docs)]
wit_bindgen::generate!({
    path: "../../../../wit",
    world: "tls-full-plugin",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "export_world",
    default_bindings_module: "switchboard_sdk::worlds::full",
});
