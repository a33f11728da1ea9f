//! The pages: the live status page at `/` and the getfile form at `/getfile`, plain
//! HTML with a little JavaScript, embedded in the binary (no build step, nothing fetched
//! from elsewhere).

use hyper::{Response, StatusCode};

use super::{Body, text};

/// The status page: plugins, listeners, counters and open connections, polled from
/// `/api/*` every second, with close, pause/resume, reload and rollback buttons.
const STATUS_PAGE: &str = include_str!("status.html");
/// The getfile form: Server, Port, File.
const GETFILE_PAGE: &str = include_str!("getfile.html");

const HTML: &str = "text/html; charset=utf-8";

/// `GET /`.
pub(super) fn status_page() -> Response<Body> {
    text(StatusCode::OK, HTML, STATUS_PAGE.into())
}

/// `GET /getfile`.
pub(super) fn getfile_page() -> Response<Body> {
    text(StatusCode::OK, HTML, GETFILE_PAGE.into())
}

/// The page shown when the getfile form gets no file: the reason, and the way back.
pub(super) fn refusal_page(why: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>getfile: no file</title></head>\n<body>\n\
         <h1>getfile: no file</h1>\n<p id=\"error\">{}</p>\n<p><a href=\"/getfile\">Back to the form</a></p>\n</body></html>\n",
        escape(why)
    )
}

/// `s` with the characters HTML gives a meaning escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_cannot_inject_markup() {
        let page = super::refusal_page("no file \"<script>\" & more");
        assert!(page.contains("no file &quot;&lt;script&gt;&quot; &amp; more"), "{page}");
        assert!(!page.contains("<script>"));
    }
}
