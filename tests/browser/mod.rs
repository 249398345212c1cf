//! A real browser for page tests: Debian's chromium, driven through chromedriver's W3C WebDriver
//! API (`hack/install-browser` installs both; nothing is downloaded at run time). Plus a plain
//! HTTP/1.1 client that can choose its source address, for requests a browser would not send.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (Connection: close), sent from `from` when given.
pub fn http(
    from: Option<IpAddr>,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
        }
        let mut stream = socket.connect(to).await.unwrap_or_else(|e| panic!("connect {to}: {e}"));
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {to}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes()).await.unwrap();
        // Generous: a browser's first start on a loaded machine takes a while.
        let raw = tokio::time::timeout(Duration::from_secs(120), read_response(&mut stream))
            .await
            .expect("response in 120 s");
        parse(&String::from_utf8_lossy(&raw))
    })
}

/// Reads one response: to its Content-Length, the end of its chunks, or the connection's close
/// (chromedriver keeps the connection open despite `Connection: close`).
async fn read_response(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return raw;
        }
        raw.extend_from_slice(&buf[..n]);
        if complete(&raw) {
            return raw;
        }
    }
}

fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let head = head.to_ascii_lowercase();
    if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        return body.len() >= len.trim().parse::<usize>().unwrap_or(0);
    }
    head.contains("transfer-encoding: chunked") && body.ends_with("0\r\n\r\n")
}

fn parse(raw: &str) -> Response {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    Response { status, body: if chunked { dechunk(body) } else { body.to_string() }, headers }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A headless Chromium session; the browser and its driver end when this is dropped.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn installed() -> (PathBuf, PathBuf) {
    let chromium = PathBuf::from(std::env::var("HITL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let driver = PathBuf::from(std::env::var("HITL_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()));
    for p in [&chromium, &driver] {
        assert!(p.exists(), "{} is missing: run hack/install-browser (make test-integration does)", p.display());
    }
    (chromium, driver)
}

impl Browser {
    pub fn start() -> Self {
        let (chromium, driver_bin) = installed();
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = std::env::temp_dir().join(format!("hitl-chromium-{port}"));
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}}}});
        let mut browser = Browser { driver, addr, session: String::new(), _profile: tempdir::Dir(profile) };
        let created = browser.call("POST", "/session", &caps);
        browser.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if method == "GET" { String::new() } else { body.to_string() };
        let r = http(None, self.addr, method, path, &[("Content-Type", "application/json")], &body);
        let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("webdriver {path}: {e}: {}", r.body));
        if r.status != 200 {
            panic!("webdriver {method} {path} -> {}: {}", r.status, v["value"]);
        }
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), &body)
    }

    /// Asks for the element(s) `css` selects (`what`: "element" or "elements"); a miss is an
    /// answer here, not a panic.
    fn locate(&self, css: &str, what: &str) -> Response {
        let body = json!({"using": "css selector", "value": css}).to_string();
        let path = format!("/session/{}/{what}", self.session);
        http(None, self.addr, "POST", &path, &[("Content-Type", "application/json")], &body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", json!({"url": url}));
    }

    pub fn url(&self) -> String {
        self.session_call("GET", "/url", json!({})).as_str().unwrap_or_default().to_string()
    }

    /// The element `css` selects, waiting up to 20 s for it to appear.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.locate(css, "element");
            if r.status == 200 {
                let v: Value = serde_json::from_str(&r.body).unwrap();
                return v["value"]
                    .as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string();
            }
            assert!(Instant::now() < deadline, "no element {css} on {}:\n{}", self.url(), self.text("body"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn exists(&self, css: &str) -> bool {
        let r = self.locate(css, "elements");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["value"].as_array().is_some_and(|a| !a.is_empty())
    }

    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.session_call("POST", &format!("/element/{el}/click"), json!({}));
    }

    /// Clears the field, then types `text` into it as a person would.
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.session_call("POST", &format!("/element/{el}/clear"), json!({}));
        self.session_call("POST", &format!("/element/{el}/value"), json!({"text": text}));
    }

    pub fn text(&self, css: &str) -> String {
        let r = self.locate(css, "element");
        if r.status != 200 {
            return String::new();
        }
        let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
        let Some(el) = v["value"].as_object().and_then(|o| o.values().next()).and_then(Value::as_str) else {
            return String::new();
        };
        // The element may be replaced in between (the live run page swaps its fragment): then
        // there is no text this time, and callers that wait ask again.
        let r = http(None, self.addr, "GET", &format!("/session/{}/element/{el}/text", self.session), &[], "");
        let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
        v["value"].as_str().filter(|_| r.status == 200).unwrap_or_default().to_string()
    }

    /// The current value of a form field.
    pub fn value(&self, css: &str) -> String {
        let el = self.find(css);
        self.session_call("GET", &format!("/element/{el}/property/value"), json!({}))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits up to `timeout` until the text of `css` contains `want`; returns it.
    pub fn wait_text(&self, css: &str, want: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.text(css);
            if t.contains(want) {
                return t;
            }
            assert!(Instant::now() < deadline, "{css} never contained {want:?}; last: {t:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` in the page (WebDriver "execute sync"); its return value.
    pub fn script(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", json!({"script": script, "args": []}))
    }

    /// Switches into the page's `index`th frame (None: back to the top page).
    pub fn frame(&self, index: Option<u64>) {
        self.session_call("POST", "/frame", json!({"id": index}));
    }

    /// Resizes the window (CSS pixels), e.g. to a phone's 390 x 844.
    pub fn resize(&self, width: u32, height: u32) {
        self.session_call("POST", "/window/rect", json!({"width": width, "height": height}));
    }

    /// Presses keys (WebDriver key codes, e.g. "\u{E004}" for Tab) in the focused element.
    pub fn keys(&self, keys: &str) {
        let actions = keys
            .chars()
            .flat_map(|c| {
                [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})]
            })
            .collect::<Vec<_>>();
        self.session_call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    /// Saves a PNG of the window.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.session_call("GET", "/screenshot", json!({}));
        let png = base64_decode(b64.as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                http(None, self.addr, "DELETE", &format!("/session/{}", self.session), &[], "")
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(val).collect();
    bytes
        .chunks(4)
        .flat_map(|c| {
            let n = c.iter().enumerate().fold(0u32, |n, (i, v)| n | (u32::from(*v) << (18 - 6 * i)));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(c.len().saturating_sub(1))
        })
        .collect()
}
