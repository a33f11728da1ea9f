//! Checking an npm install against the committed `package-lock.json`.
//!
//! Why not `npm ci`, and why not a byte comparison of the lock after `npm install`: both
//! break when nothing in the project changed. Packages such as jco-node-fs or rolldown
//! declare optional platform packages (`…-win32-x64-msvc`, `…-linux-arm64-musl`) that may
//! be published only after our lock was written. From then on `npm install` adds their
//! entries to the lock (they are never installed here: wrong platform), and `npm ci`
//! refuses the committed lock because an optional edge it knows about has no entry.
//!
//! What reproducibility needs is narrower and can be checked exactly: every package that
//! npm actually installed on this machine (listed in `node_modules/.package-lock.json`)
//! is in the committed lock at the same path, version and integrity, and the lock was
//! written for this `package.json`. Entries for other platforms are none of our business.
//! So a lock that gains other-platform entries is accepted, and a lock that lacks a
//! package the install needs, pins another version, or was written for a different
//! `package.json`, is refused with the command that fixes it.

use anyhow::{Result, bail};
use serde_json::Value;

/// What to run when the lock does not fit.
pub const FIX: &str = "run `npm install` in plugins/js and commit plugins/js/package-lock.json";

/// The dependency tables of a `package.json` (or of a lock's root entry) that pin the
/// toolchain.
const DEPENDENCY_TABLES: [&str; 3] = ["dependencies", "devDependencies", "optionalDependencies"];

/// Checks, before installing, that `lock` was written for `package_json`: the lock's root
/// entry names the same dependencies at the same version ranges.
pub fn check_lock_matches_manifest(package_json: &Value, lock: &Value) -> Result<()> {
    let root = &lock["packages"][""];
    if root.is_null() {
        bail!("plugins/js/package-lock.json has no root entry (lockfileVersion 3 expected): {FIX}");
    }
    for table in DEPENDENCY_TABLES {
        let (want, have) = (&package_json[table], &root[table]);
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
        if want != have && !(empty(want) && empty(have)) {
            bail!(
                "plugins/js/package-lock.json was written for other {table} than plugins/js/package.json has ({want} in package.json, {have} in the lock): {FIX}"
            );
        }
    }
    Ok(())
}

/// Checks, after installing, that every package in `installed` (the contents of
/// `node_modules/.package-lock.json`) is pinned by `lock` at the same version and
/// integrity, and that every non-optional package of `lock` was installed.
pub fn check_installed_against_lock(lock: &Value, installed: &Value) -> Result<()> {
    let (Some(pinned), Some(present)) = (lock["packages"].as_object(), installed["packages"].as_object()) else {
        bail!("a lock without a `packages` table (lockfileVersion 3 expected): {FIX}");
    };
    let mut problems = Vec::new();
    for (path, got) in present {
        match pinned.get(path) {
            None => problems.push(format!("{path} {} is installed but not in the lock", got["version"])),
            Some(want) => {
                for field in ["version", "integrity"] {
                    if want[field] != got[field] {
                        problems.push(format!("{path}: the lock pins {field} {} but {} was installed", want[field], got[field]));
                    }
                }
            }
        }
    }
    for (path, want) in pinned {
        let optional = want["optional"].as_bool().unwrap_or(false) || want["devOptional"].as_bool().unwrap_or(false);
        // "" is the project itself; links point into it.
        if !path.is_empty() && !optional && !want["link"].as_bool().unwrap_or(false) && !present.contains_key(path) {
            problems.push(format!("{path} {} is in the lock but was not installed", want["version"]));
        }
    }
    if !problems.is_empty() {
        problems.sort();
        bail!("the JavaScript toolchain does not match plugins/js/package-lock.json:\n  {}\n{FIX}", problems.join("\n  "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lock(extra: Value) -> Value {
        let mut packages = json!({
            "": { "devDependencies": { "@bytecodealliance/componentize-js": "0.23.0" } },
            "node_modules/@bytecodealliance/componentize-js": { "version": "0.23.0", "integrity": "sha512-A" },
            "node_modules/@bytecodealliance/jco-node-fs-linux-x64-gnu": { "version": "0.3.2", "integrity": "sha512-B", "optional": true },
        });
        for (k, v) in extra.as_object().unwrap() {
            packages[k] = v.clone();
        }
        json!({ "lockfileVersion": 3, "packages": packages })
    }

    fn installed() -> Value {
        json!({ "packages": {
            "node_modules/@bytecodealliance/componentize-js": { "version": "0.23.0", "integrity": "sha512-A" },
            "node_modules/@bytecodealliance/jco-node-fs-linux-x64-gnu": { "version": "0.3.2", "integrity": "sha512-B" },
        }})
    }

    #[test]
    fn a_lock_gaining_only_other_platform_entries_is_accepted() {
        let grown = lock(json!({
            "node_modules/@bytecodealliance/jco-node-fs-win32-x64-msvc": { "version": "0.3.2", "integrity": "sha512-C", "optional": true },
            "node_modules/@rolldown/binding-linux-arm64-musl": { "version": "1.3.2", "integrity": "sha512-D", "optional": true },
        }));
        check_installed_against_lock(&grown, &installed()).unwrap();
        check_installed_against_lock(&lock(json!({})), &installed()).unwrap();
    }

    #[test]
    fn a_lock_missing_a_needed_package_is_refused_with_the_fix() {
        let mut needs_more = installed();
        needs_more["packages"]["node_modules/@bytecodealliance/preview2-shim"] = json!({ "version": "0.25.0", "integrity": "sha512-E" });
        let err = check_installed_against_lock(&lock(json!({})), &needs_more).unwrap_err().to_string();
        assert!(err.contains("preview2-shim") && err.contains("not in the lock"), "{err}");
        assert!(err.contains("run `npm install` in plugins/js"), "{err}");
    }

    #[test]
    fn another_version_or_a_missing_required_package_is_refused() {
        let mut other = installed();
        other["packages"]["node_modules/@bytecodealliance/componentize-js"]["version"] = json!("0.24.0");
        let err = check_installed_against_lock(&lock(json!({})), &other).unwrap_err().to_string();
        assert!(err.contains("pins version \"0.23.0\" but \"0.24.0\""), "{err}");
        let mut fewer = installed();
        fewer["packages"].as_object_mut().unwrap().remove("node_modules/@bytecodealliance/componentize-js");
        let err = check_installed_against_lock(&lock(json!({})), &fewer).unwrap_err().to_string();
        assert!(err.contains("in the lock but was not installed"), "{err}");
    }

    #[test]
    fn a_manifest_edited_without_its_lock_is_refused() {
        let manifest = json!({ "devDependencies": { "@bytecodealliance/componentize-js": "0.23.0" } });
        check_lock_matches_manifest(&manifest, &lock(json!({}))).unwrap();
        let edited = json!({ "devDependencies": { "@bytecodealliance/componentize-js": "0.24.0" } });
        let err = check_lock_matches_manifest(&edited, &lock(json!({}))).unwrap_err().to_string();
        assert!(err.contains("devDependencies") && err.contains(FIX), "{err}");
        let added = json!({ "devDependencies": { "@bytecodealliance/componentize-js": "0.23.0" }, "dependencies": { "x": "1" } });
        assert!(check_lock_matches_manifest(&added, &lock(json!({}))).is_err());
    }

    /// The committed files themselves fit each other.
    #[test]
    fn the_committed_lock_fits_the_committed_manifest() {
        let root = crate::workspace_root();
        let read = |p: &str| -> Value { serde_json::from_slice(&std::fs::read(root.join(p)).unwrap()).unwrap() };
        check_lock_matches_manifest(&read("plugins/js/package.json"), &read("plugins/js/package-lock.json")).unwrap();
    }
}
