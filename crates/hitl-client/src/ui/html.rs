//! HTML escaping and the page frame every page shares: one stylesheet, no scripts but the
//! optional live update, readable on a phone and with a screen reader. Both are served as files
//! (`/assets/...`), never inline, so the Content-Security-Policy allows no inline code at all.

use std::fmt::Write as _;

/// Text made safe for HTML content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// A path segment made safe for a URL (names are DNS labels, but never trust that in markup).
pub fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The stylesheet, served at `STYLE_PATH`.
pub const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;--ok:#1a7f37;--bad:#cf222e;--wait:#9a6700;--accent:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#3d444d;--ok:#3fb950;--bad:#f85149;--wait:#d29922;--accent:#4493f8}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid var(--accent);outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:var(--bg);padding:4px}
header{border-bottom:1px solid var(--line);padding:8px 16px;display:flex;gap:16px;flex-wrap:wrap;align-items:baseline}
header .who{color:var(--muted);margin-left:auto}main{padding:16px;max-width:960px;margin:0 auto}
h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
ul.gates{list-style:none;padding:0;margin:0}ul.gates li{border:1px solid var(--line);border-radius:6px;padding:10px 12px;margin:8px 0}
.meta{color:var(--muted);font-size:.9rem}.msg{white-space:pre-wrap;margin:.25rem 0}
.phase{font-weight:600}.Succeeded,.Approved{color:var(--ok)}.Failed,.Rejected,.Expired{color:var(--bad)}.Pending,.Waiting,.Running{color:var(--wait)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px;border-bottom:1px solid var(--line);vertical-align:top}
.scroll{overflow-x:auto}form .field{margin:12px 0}label{display:block;font-weight:600}
input,select,textarea{font:inherit;width:100%;max-width:28rem;padding:8px;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
.hint{color:var(--muted);font-size:.9rem;margin:2px 0}.buttons{display:flex;gap:12px;flex-wrap:wrap;margin-top:16px}
button{font:inherit;padding:10px 20px;border-radius:6px;border:1px solid var(--line);cursor:pointer;min-height:44px}
button.approve{background:var(--ok);color:#fff;border-color:var(--ok)}button.reject{background:var(--bad);color:#fff;border-color:var(--bad)}
.alert{border:2px solid var(--bad);border-radius:6px;padding:10px 12px;margin:12px 0}.field.invalid input,.field.invalid select{border:2px solid var(--bad)}.evidence pre{white-space:pre-wrap;overflow-wrap:anywhere;max-height:32em;overflow:auto;border:1px solid #ccc;padding:8px;font-size:.85em}.notice{border:2px solid var(--ok);border-radius:6px;padding:10px 12px;margin:12px 0}
svg.dag{max-width:100%;height:auto}svg.dag text{font:13px system-ui,sans-serif;fill:var(--fg)}svg.dag rect{fill:var(--bg);stroke-width:2}
svg.dag .edge{stroke:var(--muted);fill:none}
svg.dag rect.c-ok{stroke:var(--ok)}svg.dag rect.c-bad{stroke:var(--bad)}svg.dag rect.c-wait{stroke:var(--wait)}svg.dag rect.c-idle{stroke:var(--line)}
svg.dag text.c-ok{fill:var(--ok)}svg.dag text.c-bad{fill:var(--bad)}svg.dag text.c-wait{fill:var(--wait)}svg.dag text.c-idle{fill:var(--line)}
"#;

/// Where the stylesheet is served.
pub const STYLE_PATH: &str = "/assets/style.css";

/// The run page's live update, served at `LIVE_PATH`: swaps in the fragment the server streams.
pub const LIVE: &str = "const run = document.getElementById('run');\n\
new EventSource(location.pathname + '/events').onmessage = e => { run.innerHTML = JSON.parse(e.data); };\n";

/// Where the live update's script is served.
pub const LIVE_PATH: &str = "/assets/live.js";

/// The policy on every answer: nothing inline, nothing from elsewhere, never in a frame.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A whole page: `who` is the person the page acts as, shown in the header.
pub fn page(title: &str, who: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · hitl</title><link rel=\"stylesheet\" href=\"{STYLE_PATH}\"></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><strong><a href=\"/\">hitl</a></strong><nav aria-label=\"Main\"><a href=\"/\">Inbox</a> <a href=\"/history\">History</a></nav>\
         <span class=\"who\">Signed in as <span id=\"who\">{who}</span></span></header>\
         <main id=\"main\">{body}</main></body></html>",
        title = esc(title),
        who = esc(who),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_shown_not_run() {
        assert_eq!(esc("<script>\"x\" & 'y'</script>"), "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("wf-review.step"), "wf-review.step");
    }

    #[test]
    fn the_page_names_who_it_acts_as() {
        let p = page("Inbox", "<alice>", "<p>x</p>");
        assert!(p.contains("Signed in as <span id=\"who\">&lt;alice&gt;</span>"));
        assert!(p.contains("<title>Inbox · hitl</title>"));
        assert!(p.contains("<main id=\"main\"><p>x</p></main>"));
    }
}
