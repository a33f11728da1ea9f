//! The mismatch report of `switchboard test`: expected and received bytes as transcript
//! lines, compared line by line like a unified diff.

use crate::session::transcript::{escape, lines};

/// Beyond this many line pairs the diff is not aligned, just listed.
const MAX_CELLS: usize = 250_000;

/// The diff of `expected` and `got`, each line shown as `PREFIX< BYTES` (escaped), with
/// `-` for expected only, `+` for received only and a space for both.
pub(crate) fn diff(prefix: &str, expected: &[u8], got: &[u8]) -> String {
    let show = |l: &[u8]| format!("{prefix}< {}", escape(l));
    let a: Vec<String> = lines(expected).into_iter().map(show).collect();
    let b: Vec<String> = lines(got).into_iter().map(show).collect();
    let mut out = String::from("--- expected\n+++ got\n");
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        a.iter().for_each(|l| out.push_str(&format!("-{l}\n")));
        b.iter().for_each(|l| out.push_str(&format!("+{l}\n")));
        return out;
    }
    // Longest common subsequence, then walk it.
    let mut len = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            len[i][j] = if a[i] == b[j] { len[i + 1][j + 1] + 1 } else { len[i + 1][j].max(len[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!(" {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j == b.len() || (i < a.len() && len[i + 1][j] >= len[i][j + 1]) {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        }
    }
    if b.is_empty() {
        out.push_str("+(nothing)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn a_changed_line_shows_both_sides_and_the_rest_as_context() {
        let d = diff("bob", b"a\r\nb\r\nc", b"a\r\nB\r\nc");
        assert_eq!(d, "--- expected\n+++ got\n bob< a\\r\\n\n-bob< b\\r\\n\n+bob< B\\r\\n\n bob< c\n");
        assert!(diff("", b"x", b"").ends_with("-< x\n+(nothing)\n"));
    }
}
