//! The JavaScript template: `app.js` beside the JavaScript SDK (`sdk/`) and a WIT folder
//! laid out as componentize-js reads it, built by the componentize-js that
//! `plugins/js/package.json` and `package-lock.json` pin.

use std::path::Path;

use serde_json::Value;

use super::{NewError, World, embedded, readme, write, write_tree};

/// The repository's toolchain manifest and its lock, as its own JavaScript plugins are built.
const PACKAGE_JSON: &str = include_str!("../../../../plugins/js/package.json");
const PACKAGE_LOCK: &str = include_str!("../../../../plugins/js/package-lock.json");

/// The repository's manifest and lock, parsed; both are checked in and tested, so a parse
/// failure is a broken build of switchboard itself.
fn pins() -> (Value, Value) {
    let manifest = serde_json::from_str(PACKAGE_JSON).expect("plugins/js/package.json is JSON");
    let lock = serde_json::from_str(PACKAGE_LOCK).expect("plugins/js/package-lock.json is JSON");
    (manifest, lock)
}

/// npm package names are lowercase.
fn package_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The componentize-js command `npm run build` runs.
fn build_script(name: &str, world: World) -> String {
    // Without `-d http` the component imports wasi:http, which the host does not provide.
    format!("componentize-js app.js --wit wit --world-name {} -d http -d fetch-event -o {name}.wasm", world.wit_name())
}

/// `package.json`: the project, its build script and the repository's pinned toolchain
/// (written by hand, in the order npm writes it).
fn package_json(name: &str, world: World) -> String {
    let (manifest, _) = pins();
    let json = |v: Value| serde_json::to_string_pretty(&v).expect("a JSON value serialises").replace('\n', "\n  ");
    let mut out = format!(
        "{{\n  \"name\": {},\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \"description\": \"A switchboard plugin (written by switchboard new)\",\n  \"scripts\": {}",
        json(package_name(name).into()),
        json(serde_json::json!({ "build": build_script(name, world) }))
    );
    for table in ["dependencies", "devDependencies", "optionalDependencies"] {
        if let Some(deps) = manifest.get(table) {
            out.push_str(&format!(",\n  {}: {}", json(table.into()), json(deps.clone())));
        }
    }
    out.push_str("\n}\n");
    out
}

/// `package-lock.json`: the repository's lock, renamed for the project, so `npm install`
/// fetches exactly the versions (and checks the integrity) switchboard's builds use.
fn package_lock(name: &str) -> String {
    let (_, mut lock) = pins();
    let name = Value::from(package_name(name));
    lock["name"] = name.clone();
    if let Some(root) = lock.pointer_mut("/packages/").and_then(Value::as_object_mut) {
        root.insert("name".into(), name);
        root.insert("version".into(), "0.1.0".into());
        root.remove("license");
    }
    pretty(&lock)
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serialises");
    text.push('\n');
    text
}

/// `wit/worlds.wit`: the JavaScript worlds (the contract's plus `wasi:cli/environment`).
/// If they have no `datagram-plugin` world yet, one is made from `full-plugin` the same way.
fn worlds_wit(worlds: &str) -> String {
    if worlds.contains("world datagram-plugin") {
        return worlds.to_owned();
    }
    let Some(start) = worlds.find("world full-plugin {") else { return worlds.to_owned() };
    let Some(len) = worlds[start..].find('}') else { return worlds.to_owned() };
    let full = &worlds[start..=start + len];
    format!(
        "{worlds}\n/// `switchboard:plugin/datagram-plugin` + settings (written by `switchboard new`).\n{}\n",
        full.replace("full-plugin", "datagram-plugin")
    )
}

/// The echo-shaped module for `world`.
fn app_js(name: &str, world: World) -> String {
    let imports = if world.streams() { "concat, serve, setting, utf8" } else { "concat, setting, utf8" };
    let listen = world.listen();
    let mut out = format!(
        r#"// {name}: every chunk read comes back as `Echo=>` + chunk (setting PREFIX replaces `Echo=>`).
//
// Rules of a plugin: no sockets of its own (the host owns the network), settings arrive as
// environment variables (`switchboard serve --set {name}.KEY=VALUE`), files only under the
// folder the host grants. The exports below are the world's: meta, handler, datagramHandler.

import {{ {imports} }} from './sdk/switchboard.js';

const prefix = () => utf8(setting('PREFIX', 'Echo=>'));
"#
    );
    if world.streams() {
        out.push_str(
            r#"
/** Until the client closes its side: read a chunk, send the prefix and the chunk. */
function echo(conn) {
  const replyPrefix = prefix();
  for (let data = conn.recv(); data.length > 0; data = conn.recv()) {
    conn.sendall(concat(replyPrefix, data));
  }
}
"#,
        );
    }
    out.push_str(&format!(
        r#"
export const meta = {{
  describe() {{
    return {{ name: '{name}', version: '0.1.0', summary: 'replies Echo=> + each chunk read (PREFIX)', listen: ['{listen}'] }};
  }},
}};
"#
    ));
    if world.streams() {
        out.push_str(
            r#"
export const handler = {
  handleConnection(info, input, output) {
    serve(echo, info, input, output);
  },
};
"#,
        );
    }
    if world.datagrams() {
        out.push_str(
            r#"
export const datagramHandler = {
  handleDatagram(peer, payload) {
    return [concat(prefix(), payload)];
  },
};
"#,
        );
    }
    out
}

/// Writes the project; returns its build command.
pub(super) fn write_project(dir: &Path, name: &str, world: World) -> Result<String, NewError> {
    // componentize-js reads one folder: the JavaScript worlds as the root package, the
    // contract and the wasi packages it uses as its deps.
    for (rel, contents) in embedded::JS_WIT {
        let contents = if *rel == "worlds.wit" { worlds_wit(contents) } else { (*contents).to_owned() };
        write(dir, &format!("wit/{rel}"), &contents)?;
    }
    for (rel, contents) in embedded::WIT {
        let at = if rel.starts_with("deps/") { format!("wit/{rel}") } else { format!("wit/deps/switchboard/{rel}") };
        write(dir, &at, contents)?;
    }
    write_tree(dir, "sdk/", embedded::JS_SDK)?;
    write(dir, "package.json", &package_json(name, world))?;
    write(dir, "package-lock.json", &package_lock(name))?;
    write(dir, "app.js", &app_js(name, world))?;
    write(dir, ".gitignore", "/node_modules/\n*.wasm\n")?;
    let build = format!("npm install --no-audit --no-fund && node_modules/.bin/{}", build_script(name, world));
    let notes = format!(
        "The handler is `app.js`; `sdk/` (the JavaScript SDK) and `wit/` (the contract, with the\n\
         worlds JavaScript plugins use) came with `switchboard new`, matching the host that wrote\n\
         them. `npm install` fetches the componentize-js that `package-lock.json` pins (node 20 or\n\
         later); after the first time, `npm run build` rebuilds:\n\n    {}\n\n\
         `-d http -d fetch-event` keep `wasi:http` out of the component (the host does not provide\n\
         it). Write with `conn.write`/`conn.sendall`, never `blockingWriteAndFlush` (it traps above\n\
         4096 bytes).\n",
        build_script(name, world)
    );
    write(dir, "README.md", &readme(name, world, &build, &notes))?;
    Ok(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_and_lock_keep_the_repositorys_pins() {
        let (manifest, lock) = pins();
        let ours: Value = serde_json::from_str(&package_json("Hello", World::Full)).unwrap();
        let our_lock: Value = serde_json::from_str(&package_lock("Hello")).unwrap();
        assert_eq!(ours["devDependencies"], manifest["devDependencies"]);
        assert!(ours["devDependencies"].as_object().is_some_and(|d| d.contains_key("@bytecodealliance/componentize-js")));
        assert_eq!(ours["name"], "hello");
        assert_eq!(our_lock["name"], "hello");
        assert_eq!(our_lock["packages"][""]["devDependencies"], ours["devDependencies"]);
        assert!(ours["scripts"]["build"].as_str().unwrap().ends_with("-o Hello.wasm"));
        // Everything but the root entry is the repository's lock, unchanged.
        let (mut a, mut b) = (lock["packages"].clone(), our_lock["packages"].clone());
        a.as_object_mut().unwrap().remove("");
        b.as_object_mut().unwrap().remove("");
        assert_eq!(a, b);
    }

    #[test]
    fn there_is_always_a_datagram_world() {
        let (_, worlds) = embedded::JS_WIT.iter().find(|(rel, _)| *rel == "worlds.wit").unwrap();
        let ours = worlds_wit(worlds);
        for world in [World::Stream, World::Datagram, World::Full] {
            assert!(ours.contains(&format!("world {} {{", world.wit_name())), "{ours}");
        }
        assert!(ours.contains("include switchboard:plugin/datagram-plugin@"), "{ours}");
        assert_eq!(worlds_wit(&ours), ours);
    }
}
