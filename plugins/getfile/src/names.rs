//! File-name rules, kept apart from the I/O so they are unit-tested natively.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Checks a requested name and maps it under the granted root `/`. Refuses what is not
/// UTF-8, empty, absolute, contains NUL or a `..` component, names the root itself, or
/// passes through a symbolic link or names anything but a regular file.
pub fn resolve(raw: &[u8]) -> Result<PathBuf, String> {
    let relative = check(raw)?;
    let mut path = PathBuf::from("/");
    let parts: Vec<&str> = relative.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => format!("cannot look up {}: {e}", path.display()),
        })?;
        if meta.file_type().is_symlink() {
            return Err(format!("{} is a symbolic link; links are not followed", path.display()));
        }
        let last = i + 1 == parts.len();
        if last && meta.is_dir() {
            return Err("is a directory".into());
        }
        if last && !meta.is_file() {
            return Err("not a regular file".into());
        }
    }
    Ok(path)
}

/// The protocol-level checks, without touching the filesystem: the normalised relative
/// name (no empty or `.` components).
pub fn check(raw: &[u8]) -> Result<String, String> {
    let name = std::str::from_utf8(raw).map_err(|_| "name is not valid UTF-8".to_string())?;
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains('\0') {
        return Err("name contains NUL".into());
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute path".into());
    }
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err("name contains a .. component".into());
    }
    if parts.is_empty() {
        return Err("names the directory itself".into());
    }
    Ok(parts.join("/"))
}

/// The name a downloaded file is saved under: the last component (like the seed's
/// `os.path.split(filename)[1]`), if it is a usable file name.
pub fn local_name(requested: &str) -> Option<&str> {
    let last = requested.rsplit(['/', '\\']).next()?;
    (!last.is_empty() && last != "." && last != ".." && !last.contains('\0')).then_some(last)
}

/// `time.ctime()` in UTC: `Thu Mar 16 11:54:21 2000`.
pub fn ctime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(month - 1) as usize];
    format!("{weekday} {month} {day:>2} {:02}:{:02}:{:02} {year}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn traversal_and_garbage_are_refused() {
        for (raw, why) in [
            (&b""[..], "empty"),
            (b"/etc/passwd", "absolute"),
            (b"../x", ".."),
            (b"sub/../../x", ".."),
            (b"sub/..", ".."),
            (b"a\0b", "NUL"),
            (b"\xff\xfe", "UTF-8"),
            (b".", "directory itself"),
            (b"./", "directory itself"),
        ] {
            let err = check(raw).unwrap_err();
            assert!(err.contains(why), "{raw:?}: {err}");
        }
    }

    #[test]
    fn ordinary_names_are_normalised() {
        assert_eq!(check(b"file.txt").unwrap(), "file.txt");
        assert_eq!(check(b"sub//deep/./f").unwrap(), "sub/deep/f");
        assert_eq!(check(b"..hidden").unwrap(), "..hidden");
    }

    #[test]
    fn local_names_are_the_last_component() {
        assert_eq!(local_name("testdir/python15.lib"), Some("python15.lib"));
        assert_eq!(local_name("testdir\\textfile"), Some("textfile"));
        assert_eq!(local_name("plain"), Some("plain"));
        assert_eq!(local_name("dir/"), None);
        assert_eq!(local_name("a/.."), None);
    }

    #[test]
    fn ctime_matches_python() {
        // time.ctime(953207661) in UTC == 'Thu Mar 16 11:54:21 2000'
        assert_eq!(ctime(UNIX_EPOCH + Duration::from_secs(953_207_661)), "Thu Mar 16 11:54:21 2000");
        assert_eq!(ctime(UNIX_EPOCH + Duration::from_secs(1_794_998_096)), "Wed Nov 18 10:34:56 2026");
        assert_eq!(ctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
    }
}
