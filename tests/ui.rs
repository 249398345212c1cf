//! The approval pages in a real browser (headless Chromium through WebDriver), on the local
//! cluster: every action is taken as the person, so the API server's RBAC and admission policies
//! decide, exactly as for `kubectl patch`. Screenshots go to target/ui-screenshots/.

mod browser;
mod common;
mod harness;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use browser::{Browser, Response, http};
use common::{kubeconfig, kubectl_ok, kubectl_stdin, repo_root, test_namespace};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// `kubectl hitl ui` running as someone; killed on drop.
struct UiServer {
    child: Child,
    /// Kept open: the server prints more, and a closed pipe would stop it.
    _stdout: BufReader<std::process::ChildStdout>,
    /// The address it printed (with the session secret, in local mode).
    url: String,
    addr: SocketAddr,
}

impl UiServer {
    fn start(kubeconfig_path: &std::path::Path, args: &[&str]) -> Self {
        let mut child = Command::new(common::plugin_bin())
            .arg("--kubeconfig")
            .arg(kubeconfig_path)
            .args(["ui", "--no-open"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kubectl-hitl ui");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        let url = first.split_whitespace().find(|w| w.starts_with("http://")).map(str::to_string);
        let addr_text = match &url {
            Some(u) => u.trim_start_matches("http://").split('/').next().unwrap().to_string(),
            None => first.split_whitespace().nth(5).unwrap_or_else(|| panic!("no address in {first:?}")).to_string(),
        };
        UiServer { child, _stdout: stdout, url: url.unwrap_or_default(), addr: addr_text.parse().unwrap() }
    }

    /// As `user`, on 127.0.0.1 with their own kubeconfig.
    fn local(user: &str, ns: &str) -> Self {
        Self::start(&kubeconfig(user), &["-n", ns])
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot(browser: &Browser, name: &str) {
    browser.screenshot(&repo_root().join("target/ui-screenshots").join(format!("{name}.png")));
}

/// A contract review: alice (or legal) answers typed questions, then legal countersigns.
fn review_workflow(name: &str) -> String {
    format!(
        r#"
apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  params: [{{name: document, value: "s3://contracts/acme.pdf"}}]
  steps:
    - name: scan
      container: {{image: busybox:1.36, args: [echo, scanned]}}
    - name: review
      suspend:
        message: "Three clauses flagged in {{{{ params.document }}}}: sign, redact or reject?"
        approvers: {{users: [alice], groups: [legal]}}
        inputs:
          - {{name: verdict, type: string, enum: [sign, redact, reject], required: true, description: "What to do with the contract"}}
          - {{name: priority, type: integer, default: 3, minimum: 1, maximum: 5}}
        timeoutSeconds: 86400
    - name: countersign
      suspend:
        message: "Countersign the {{{{ steps.review.outputs.verdict }}}} decision."
        approvers: {{groups: [legal]}}
        timeoutSeconds: 86400
    - name: archive
      dependsOn: [countersign]
      container: {{image: busybox:1.36, args: [echo, archived]}}
"#
    )
}

/// Bob may read Workflows and list and patch Approvals in the namespace (as `edit` plus the
/// chart's hitl-approver role give), so any refusal comes from the admission policy that checks
/// the approver list, not from RBAC.
fn let_bob_watch(ns: &str) {
    kubectl_ok(
        "admin",
        &["-n", ns, "create", "role", "approver", "--verb=get,list,watch,patch", "--resource=approvals.hitl.dev"],
    );
    kubectl_ok(
        "admin",
        &["-n", ns, "create", "role", "runs", "--verb=get,list,watch", "--resource=workflows.hitl.dev"],
    );
    for role in ["approver", "runs"] {
        kubectl_ok(
            "admin",
            &["-n", ns, "create", "rolebinding", &format!("bob-{role}"), &format!("--role={role}"), "--user=bob"],
        );
    }
}

fn session_cookie(server: &UiServer) -> String {
    let path = server.url.trim_start_matches(&server.base()).to_string();
    let r = http(None, server.addr, "GET", &path, &[], "");
    assert_eq!(r.status, 303, "the token address starts a session: {r:?}");
    r.header("set-cookie").unwrap().split(';').next().unwrap().to_string()
}

fn csrf(page: &str) -> String {
    page.split("name=\"csrf-token\" content=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

fn form_post(server: &UiServer, path: &str, headers: &[(&str, &str)], form: &str) -> Response {
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    http(None, server.addr, "POST", path, &h, form)
}

#[test]
fn alice_decides_in_the_browser_bob_only_watches_carol_decides() {
    let ns = test_namespace("ui");
    let ns = ns.name();
    let _op = Operator::start(ns);
    let_bob_watch(ns);
    apply(ns, &review_workflow("contract"));
    wait_pending(ns, "contract.review");

    let alice = UiServer::local("alice", ns);
    let browser = Browser::start();
    browser.goto(&alice.url);
    assert!(!browser.url().contains("token="), "the secret leaves the address bar: {}", browser.url());
    assert_eq!(browser.text("#who"), "alice");
    let waiting = browser.wait_text("#decide", "contract / review", WAIT);
    assert!(waiting.contains("Three clauses flagged in s3://contracts/acme.pdf"), "{waiting}");
    screenshot(&browser, "inbox");

    // A bad value: the API server refuses it, the page says so and keeps what was typed.
    browser.click("#decide a[href$='/contract.review']");
    browser.click("select[name='input.verdict'] option[value='sign']");
    browser.type_into("input[name='input.priority']", "9");
    browser.type_into("#comment", "clause 4 is fine after all");
    browser.click("#approve");
    let refusal = browser.wait_text("#refusal", "Refused", WAIT);
    assert!(refusal.starts_with("Refused: input priority: must be at most 5"), "what matters first: {refusal}");
    assert!(refusal.contains("ValidatingAdmissionPolicy 'hitl-approval-input'"), "then who said it: {refusal}");
    browser.find("input[name='input.priority'][aria-invalid='true']");
    assert!(!browser.exists("select[name='input.verdict'][aria-invalid='true']"), "only the field it names");
    // alice's grant covers the gate, not the Workflow: no link that would answer forbidden.
    assert!(browser.text("#run-unreadable").contains("you may not read this Workflow"));
    assert_eq!(browser.value("input[name='input.priority']"), "9");
    assert_eq!(browser.value("select[name='input.verdict']"), "sign");
    assert_eq!(browser.value("#comment"), "clause 4 is fine after all");
    screenshot(&browser, "gate");
    assert_eq!(approval(ns, "contract.review")["status"]["phase"], "Pending");

    browser.type_into("input[name='input.priority']", "2");
    browser.click("#approve");
    let outcome = browser.wait_text("#outcome", "Approved", WAIT);
    assert!(outcome.contains("by alice"), "{outcome}");
    let decided = approval(ns, "contract.review");
    assert_eq!(decided["spec"]["decidedBy"], "alice");
    assert_eq!(decided["spec"]["input"], serde_json::json!({"verdict": "sign", "priority": 2}));
    assert_eq!(decided["spec"]["comment"], "clause 4 is fine after all");
    wait_pending(ns, "contract.countersign");

    // Alice may list no Approvals; her inbox still tells her what she decided.
    browser.goto(&format!("{}/", alice.base()));
    let mut recent = String::new();
    common::wait_for("alice's decision in her recent list", WAIT, || {
        browser.goto(&format!("{}/", alice.base()));
        recent = browser.text("#recent");
        recent.contains("contract / review").then_some(())
    });
    assert!(recent.contains("Approved") && recent.contains("alice"), "{recent}");

    // Bob may read every gate of the namespace but is listed on none: he watches.
    let bob = UiServer::local("bob", ns);
    browser.goto(&bob.url);
    browser.wait_text("#watch", "contract / countersign", WAIT);
    assert!(!browser.text("#decide").contains("contract"), "bob decides nothing: {}", browser.text("#decide"));
    browser.click("#watch a[href$='/contract.countersign']");
    browser.find("#watch-only");
    assert!(!browser.exists("#approve"), "no form for a watcher");

    // The run page, live: it changes when the run moves, without a reload.
    browser.goto(&format!("{}/runs/{ns}/contract", bob.base()));
    browser.wait_text("#run-phase", "Waiting", WAIT);

    // A crafted POST as bob, with his own session and CSRF token: the UI passes it on as bob,
    // and the API server refuses it.
    let cookie = session_cookie(&bob);
    let page = http(None, bob.addr, "GET", &format!("/gates/{ns}/contract.countersign"), &[("Cookie", &cookie)], "");
    let token = csrf(&page.body);
    let forged = form_post(
        &bob,
        &format!("/gates/{ns}/contract.countersign"),
        &[("Cookie", &cookie)],
        &format!("csrf={token}&decision=Approve"),
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(
        forged.body.contains("<strong>Refused:</strong>") && forged.body.contains("denied request"),
        "{}",
        forged.body
    );
    assert_eq!(approval(ns, "contract.countersign")["status"]["phase"], "Pending");

    // Carol, a member of legal, decides through her own server.
    let carol = UiServer::local("carol", ns);
    let cookie = session_cookie(&carol);
    let page = http(None, carol.addr, "GET", &format!("/gates/{ns}/contract.countersign"), &[("Cookie", &cookie)], "");
    assert!(page.body.contains("id=\"approve\""), "carol gets the form: {}", page.body);
    let sent = form_post(
        &carol,
        &format!("/gates/{ns}/contract.countersign"),
        &[("Cookie", &cookie)],
        &format!("csrf={}&decision=Approve&comment=ok", csrf(&page.body)),
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(approval(ns, "contract.countersign")["spec"]["decidedBy"], "carol");

    let phase = browser.wait_text("#run-phase", "Succeeded", WAIT);
    assert_eq!(phase, "Succeeded");
    assert!(browser.text("#steps").contains("by carol"), "{}", browser.text("#steps"));
    screenshot(&browser, "run");
    wait_phase(ns, "contract", "Succeeded", WAIT);

    // Bob's inbox now lists both decisions under "Recently decided".
    browser.goto(&format!("{}/", bob.base()));
    let recent = browser.text("#recent");
    assert!(recent.contains("alice") && recent.contains("carol"), "{recent}");
}

#[test]
fn the_local_server_refuses_other_hosts_no_session_and_forms_from_elsewhere() {
    let ns = test_namespace("ui-guard");
    let ns = ns.name();
    let _op = Operator::start(ns);
    apply(ns, &review_workflow("guarded"));
    wait_pending(ns, "guarded.review");
    let alice = UiServer::local("alice", ns);
    let gate = format!("/gates/{ns}/guarded.review");

    let rebinding =
        http(None, alice.addr, "GET", "/", &[("Host", &format!("attacker.example:{}", alice.addr.port()))], "");
    assert_eq!(rebinding.status, 421, "DNS rebinding: {rebinding:?}");
    let no_session = http(None, alice.addr, "GET", &gate, &[], "");
    assert_eq!(no_session.status, 401);
    let wrong_secret = http(None, alice.addr, "GET", "/?token=0000", &[], "");
    assert_eq!(wrong_secret.status, 401);

    let cookie = session_cookie(&alice);
    let page = http(None, alice.addr, "GET", &gate, &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200);
    let token = csrf(&page.body);
    let no_token = form_post(&alice, &gate, &[("Cookie", &cookie)], "decision=Approve&input.verdict=sign");
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let other_site = form_post(
        &alice,
        &gate,
        &[("Cookie", &cookie), ("Origin", "http://attacker.example")],
        &format!("csrf={token}&decision=Approve&input.verdict=sign"),
    );
    assert_eq!(other_site.status, 403, "{}", other_site.body);
    assert_eq!(approval(ns, "guarded.review")["status"]["phase"], "Pending", "nothing got through");

    // On a phone, by keyboard alone: the page fits the width, and Tab reaches every field and the
    // buttons in reading order; Enter on Reject rejects.
    let browser = Browser::start();
    browser.resize(390, 844);
    browser.goto(&alice.url);
    browser.goto(&format!("{}{gate}", alice.base()));
    browser.find("#approve");
    let overflow = browser.script("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "wider than a phone by {overflow} px");
    let mut reached = Vec::new();
    for _ in 0..12 {
        browser.keys("\u{E004}");
        let id = browser.script("return document.activeElement.id || document.activeElement.tagName");
        reached.push(id.as_str().unwrap_or_default().to_string());
        if reached.last().is_some_and(|r| r == "reject") {
            break;
        }
    }
    let order: Vec<&str> = reached
        .iter()
        .map(String::as_str)
        .filter(|r| ["in-0", "in-1", "comment", "approve", "reject"].contains(r))
        .collect();
    assert_eq!(order, ["in-0", "in-1", "comment", "approve", "reject"], "tab order: {reached:?}");
    browser.keys("\u{E007}");
    browser.wait_text("#outcome", "Rejected", WAIT);
    assert_eq!(approval(ns, "guarded.review")["spec"]["decision"], "Reject");
}

#[test]
fn a_decision_by_form_post_is_the_same_merge_patch() {
    let ns = test_namespace("ui-post");
    let ns = ns.name();
    let _op = Operator::start(ns);
    apply(ns, &review_workflow("posted"));
    wait_pending(ns, "posted.review");
    let alice = UiServer::local("alice", ns);
    let gate = format!("/gates/{ns}/posted.review");
    let cookie = session_cookie(&alice);
    let token = csrf(&http(None, alice.addr, "GET", &gate, &[("Cookie", &cookie)], "").body);
    let sent = form_post(&alice, &gate, &[("Cookie", &cookie)], &format!("csrf={token}&decision=Reject&comment=no"));
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(approval(ns, "posted.review")["spec"]["decision"], "Reject");
    assert_eq!(approval(ns, "posted.review")["spec"]["comment"], "no");
}

/// The chart's UI ServiceAccount and its impersonation rights (helm template), and a kubeconfig
/// with a token for it.
fn ui_service_account(ns: &str) -> std::path::PathBuf {
    let helm = repo_root().join(
        String::from_utf8(Command::new(repo_root().join("hack/asset-path")).arg("helm").output().unwrap().stdout)
            .unwrap()
            .trim(),
    );
    let rendered = Command::new(helm)
        .args(["template", "ui-test", "charts/hitl-operator", "--namespace", ns, "--set", "ui.enabled=true"])
        .args(["--set", "ui.impersonation.groups={legal}", "--set", &format!("ui.fullnameOverride=hitl-ui-{ns}")])
        .args(["--show-only", "templates/ui.yaml"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let manifests = String::from_utf8(rendered.stdout).unwrap();
    let rbac: Vec<&str> = manifests
        .split("\n---")
        .filter(|d| d.contains("kind: ServiceAccount") || d.contains("kind: ClusterRole"))
        .collect();
    let out = kubectl_stdin("admin", &["apply", "-f", "-"], &rbac.join("\n---\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = kubectl_ok("admin", &["-n", ns, "create", "token", &format!("hitl-ui-{ns}"), "--duration=1h"]);
    let admin = std::fs::read_to_string(kubeconfig("admin")).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    let cluster = &config["clusters"][0]["cluster"];
    let kc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": cluster["server"].as_str().unwrap(),
            "certificate-authority-data": cluster["certificate-authority-data"].as_str().unwrap()}}],
        "users": [{"name": "ui", "user": {"token": token.trim()}}],
        "contexts": [{"name": "ui", "context": {"cluster": "local", "user": "ui", "namespace": ns}}],
        "current-context": "ui",
    });
    let path = repo_root().join("target/test-logs").join(format!("kubeconfig-ui-{ns}"));
    std::fs::write(&path, kc.to_string()).unwrap();
    path
}

#[test]
fn behind_the_proxy_the_server_acts_as_the_person_and_ignores_headers_from_anyone_else() {
    let ns = test_namespace("ui-proxy");
    let ns = ns.name();
    let _op = Operator::start(ns);
    let_bob_watch(ns);
    apply(ns, &review_workflow("proxied"));
    wait_pending(ns, "proxied.review");
    let server = UiServer::start(
        &ui_service_account(ns),
        &["--auth-proxy", "--listen", "127.0.0.1:0", "--trusted-proxy", "127.0.0.2"],
    );
    let proxy: IpAddr = "127.0.0.2".parse().unwrap();
    let stranger: IpAddr = "127.0.0.3".parse().unwrap();
    let gate = format!("/gates/{ns}/proxied.review");
    // The identity headers a proxy sends for `user` in `groups`.
    let as_user = |user: &'static str, groups: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![("X-Forwarded-User", user), ("X-Forwarded-Groups", groups)]
    };

    // Headers from anything but the proxy are ignored: no identity, no page, no decision.
    let forged = http(Some(stranger), server.addr, "GET", &gate, &as_user("carol", "legal"), "");
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert!(forged.body.contains("No authenticated user"), "{}", forged.body);
    let forged_post = http(
        Some(stranger),
        server.addr,
        "POST",
        &gate,
        &[("X-Forwarded-User", "carol"), ("Content-Type", "application/x-www-form-urlencoded")],
        "decision=Approve&input.verdict=sign",
    );
    assert_eq!(forged_post.status, 401);

    // Bob, named by the proxy: he sees the gate, and the API server refuses his decision.
    let bob_page = http(Some(proxy), server.addr, "GET", &gate, &as_user("bob", ""), "");
    assert_eq!(bob_page.status, 200, "{}", bob_page.body);
    assert!(bob_page.body.contains("id=\"watch-only\""), "{}", bob_page.body);
    let mut h = as_user("bob", "");
    h.push(("Content-Type", "application/x-www-form-urlencoded"));
    let bob_post = http(
        Some(proxy),
        server.addr,
        "POST",
        &gate,
        &h,
        &format!("csrf={}&decision=Approve&input.verdict=sign", csrf(&bob_page.body)),
    );
    assert_eq!(bob_post.status, 403, "{}", bob_post.body);
    assert!(bob_post.body.contains("denied request"), "{}", bob_post.body);

    // A group the proxy must never be able to hand out: system:masters is dropped.
    let mut h = as_user("mallory", "system:masters");
    h.push(("Content-Type", "application/x-www-form-urlencoded"));
    let page = http(Some(proxy), server.addr, "GET", &gate, &as_user("mallory", "system:masters"), "");
    assert_eq!(page.status, 403, "mallory reads nothing: {}", page.body);
    let mallory = http(
        Some(proxy),
        server.addr,
        "POST",
        &gate,
        &h,
        &format!("csrf={}&decision=Approve&input.verdict=sign", csrf(&page.body)),
    );
    assert_eq!(mallory.status, 403, "{}", mallory.body);
    assert_eq!(approval(ns, "proxied.review")["status"]["phase"], "Pending");

    // Carol of legal, named by the proxy: the API server sees carol and her group.
    let carol_page = http(Some(proxy), server.addr, "GET", &gate, &as_user("carol", "legal"), "");
    assert!(carol_page.body.contains("id=\"approve\""), "{}", carol_page.body);
    let mut h = as_user("carol", "legal");
    h.push(("Content-Type", "application/x-www-form-urlencoded"));
    let sent = http(
        Some(proxy),
        server.addr,
        "POST",
        &gate,
        &h,
        &format!("csrf={}&decision=Approve&input.verdict=redact", csrf(&carol_page.body)),
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    let decided = approval(ns, "proxied.review");
    assert_eq!(decided["spec"]["decidedBy"], "carol");
    assert_eq!(decided["spec"]["decidedByGroups"], serde_json::json!(["legal"]));
}

/// The headers every answer must carry, whatever it is (a page, a refusal, a file, a 404).
fn assert_secured(r: &Response, what: &str) {
    let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP: {r:?}"));
    for part in ["frame-ancestors 'none'", "default-src 'none'", "script-src 'self'", "style-src 'self'"] {
        assert!(csp.contains(part), "{what}: CSP without {part}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains('*'), "{what}: {csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{what}");
}

/// A page that shows gates, decisions or who someone is: never kept in a cache.
fn assert_not_cached(r: &Response, what: &str) {
    assert_secured(r, what);
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
}

#[test]
fn every_answer_of_the_local_server_carries_the_security_headers() {
    let ns = test_namespace("ui-headers");
    let ns = ns.name();
    let _op = Operator::start(ns);
    apply(ns, &review_workflow("headed"));
    wait_pending(ns, "headed.review");
    let alice = UiServer::local("alice", ns);
    let gate = format!("/gates/{ns}/headed.review");
    let host = format!("attacker.example:{}", alice.addr.port());
    assert_secured(&http(None, alice.addr, "GET", "/", &[("Host", &host)], ""), "421 wrong host");
    assert_not_cached(&http(None, alice.addr, "GET", &gate, &[], ""), "401 no session");
    assert_not_cached(&http(None, alice.addr, "GET", "/?token=0000", &[], ""), "401 wrong secret");
    let path = alice.url.trim_start_matches(&alice.base()).to_string();
    assert_not_cached(&http(None, alice.addr, "GET", &path, &[], ""), "303 session start");
    let cookie = session_cookie(&alice);
    let c = [("Cookie", cookie.as_str())];
    assert_not_cached(&http(None, alice.addr, "GET", "/", &c, ""), "inbox");
    let page = http(None, alice.addr, "GET", &gate, &c, "");
    assert_eq!(page.status, 200);
    assert_not_cached(&page, "gate");
    // Bob may read the run (alice may not: her 403 page is checked too).
    assert_not_cached(&http(None, alice.addr, "GET", &format!("/runs/{ns}/headed"), &c, ""), "run, refused");
    let_bob_watch(ns);
    let bob = UiServer::local("bob", ns);
    let bob_cookie = session_cookie(&bob);
    let run = http(None, bob.addr, "GET", &format!("/runs/{ns}/headed"), &[("Cookie", &bob_cookie)], "");
    assert_eq!(run.status, 200, "{}", run.body);
    assert_not_cached(&run, "run");
    assert_not_cached(&http(None, alice.addr, "GET", &format!("/gates/{ns}/nope"), &c, ""), "404 from the API server");
    assert_not_cached(&form_post(&alice, &gate, &c, "decision=Approve"), "403 CSRF");
    assert_secured(&http(None, alice.addr, "GET", "/no/such/route", &c, ""), "404 of the router");
    assert_secured(&http(None, alice.addr, "GET", "/healthz", &[], ""), "healthz");
    // The pages' own style and script are files the policy allows, nothing inline.
    for body in [&page.body, &run.body] {
        assert!(!body.contains("<style") && !body.contains(" style=\"") && !body.contains("<script>"), "{body}");
    }
    assert!(run.body.contains("<script src=\"/assets/live.js\""), "{}", run.body);
    for (asset, kind) in [("/assets/style.css", "text/css"), ("/assets/live.js", "text/javascript")] {
        let r = http(None, alice.addr, "GET", asset, &[], "");
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.header("content-type").is_some_and(|t| t.starts_with(kind)), "{asset}: {r:?}");
        assert_secured(&r, asset);
    }
}

/// An attacker's page on another port of 127.0.0.1 (same site: the SameSite=Strict session
/// cookie goes along), framing `target`.
fn attacker_page(target: &str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = format!(
        "<!doctype html><html><body><h1>Win a prize</h1>\
         <iframe id=\"victim\" src=\"{target}\" width=\"900\" height=\"700\"></iframe></body></html>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    addr
}

#[test]
fn another_local_port_cannot_frame_the_live_gate_form() {
    let ns = test_namespace("ui-frame");
    let ns = ns.name();
    let _op = Operator::start(ns);
    apply(ns, &review_workflow("framed"));
    wait_pending(ns, "framed.review");
    let alice = UiServer::local("alice", ns);
    let gate = format!("{}/gates/{ns}/framed.review", alice.base());
    let browser = Browser::start();
    browser.goto(&alice.url);
    browser.goto(&gate);
    browser.find("#approve");

    let attacker = attacker_page(&gate);
    browser.goto(&format!("http://{attacker}/"));
    browser.find("#victim");
    // Give the frame every chance to load; then look inside it.
    std::thread::sleep(Duration::from_secs(3));
    browser.frame(Some(0));
    let mut rendered = false;
    for _ in 0..20 {
        rendered |= browser.exists("#approve") || browser.exists("form");
        std::thread::sleep(Duration::from_millis(100));
    }
    let inside = browser.text("body");
    browser.frame(None);
    screenshot(&browser, "framed-gate");
    assert!(!rendered, "the gate form rendered inside another site's frame: {inside}");
    assert!(!inside.contains("Approve") && !inside.contains("Signed in as"), "{inside}");
    assert_eq!(approval(ns, "framed.review")["status"]["phase"], "Pending");
}

#[test]
fn enter_in_a_field_decides_nothing_only_a_click_does() {
    let ns = test_namespace("ui-enter");
    let ns = ns.name();
    let _op = Operator::start(ns);
    apply(ns, &review_workflow("keyed"));
    wait_pending(ns, "keyed.review");
    let alice = UiServer::local("alice", ns);
    let browser = Browser::start();
    browser.goto(&alice.url);
    browser.goto(&format!("{}/gates/{ns}/keyed.review", alice.base()));
    browser.click("#in-0 option[value=sign]");
    // The page's stylesheet still applies under the CSP: Approve is green, not a grey default.
    let colour = browser.script("return getComputedStyle(document.getElementById('approve')).color");
    assert_eq!(colour.as_str(), Some("rgb(255, 255, 255)"), "the stylesheet did not load");
    // A marker that a navigation (a submitted form) would wipe out.
    browser.script("window.stillHere = true; return null");
    for field in ["#in-1", "#comment"] {
        browser.type_into(field, "2");
        browser.keys("\u{E007}");
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(browser.script("return window.stillHere === true"), true, "Enter in {field} submitted the form");
    }
    browser.type_into("#in-1", "2\u{E007}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(browser.script("return window.stillHere === true"), true, "Enter while typing submitted the form");
    let a = approval(ns, "keyed.review");
    assert_eq!(a["status"]["phase"], "Pending", "{a}");
    assert!(a["spec"]["decision"].is_null(), "nothing decided: {a}");

    browser.click("#approve");
    browser.wait_text("#outcome", "Approved", WAIT);
    assert_eq!(approval(ns, "keyed.review")["spec"]["input"]["priority"], 2);
}

#[test]
fn behind_the_proxy_system_users_and_unusable_groups_are_refused_in_words() {
    let ns = test_namespace("ui-proxy-names");
    let ns = ns.name();
    let _op = Operator::start(ns);
    // The gate lists only the group ops, which the chart's ServiceAccount may not impersonate
    // (its ui.impersonation.groups is [legal]).
    apply(ns, &review_workflow("opsgate").replace("users: [alice], groups: [legal]", "groups: [ops]"));
    wait_pending(ns, "opsgate.review");
    let server = UiServer::start(
        &ui_service_account(ns),
        &["--auth-proxy", "--listen", "127.0.0.1:0", "--trusted-proxy", "127.0.0.2"],
    );
    let proxy: IpAddr = "127.0.0.2".parse().unwrap();
    let gate = format!("/gates/{ns}/opsgate.review");
    let as_user = |user: &'static str, groups: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![("X-Forwarded-User", user), ("X-Forwarded-Groups", groups)]
    };
    assert_not_cached(&http(Some("127.0.0.3".parse().unwrap()), server.addr, "GET", "/", &[], ""), "401 stranger");

    // A name the API server keeps for its own components: refused before any API call.
    for user in ["system:kube-controller-manager", "system:serviceaccount:kube-system:default", "system:anonymous"] {
        for path in ["/", gate.as_str()] {
            let r = http(Some(proxy), server.addr, "GET", path, &as_user(user, ""), "");
            assert_eq!(r.status, 403, "{user} {path}: {}", r.body);
            assert!(r.body.contains("reserved for") && r.body.contains(user), "{}", r.body);
            assert_not_cached(&r, "403 system user");
        }
    }
    let mut h = as_user("system:kube-controller-manager", "");
    h.push(("Content-Type", "application/x-www-form-urlencoded"));
    let post = http(Some(proxy), server.addr, "POST", &gate, &h, "decision=Approve&input.verdict=sign");
    assert_eq!(post.status, 403, "{}", post.body);
    assert!(post.body.contains("reserved for"), "{}", post.body);

    // Carol in ops: the API server refuses to take that group from this server, and the inbox
    // says so in its words instead of "Nothing waits for you".
    let inbox = http(Some(proxy), server.addr, "GET", "/", &as_user("carol", "ops"), "");
    assert_not_cached(&inbox, "inbox, unusable group");
    assert!(!inbox.body.contains("Nothing waits for you"), "{}", inbox.body);
    assert_eq!(inbox.status, 403, "{}", inbox.body);
    assert!(inbox.body.contains("would not act as carol in the groups [ops]"), "{}", inbox.body);
    assert!(inbox.body.contains("is forbidden") && inbox.body.contains("impersonate"), "{}", inbox.body);
    // In a group it may pass on, her inbox is an inbox.
    let legal = http(Some(proxy), server.addr, "GET", "/", &as_user("carol", "legal"), "");
    assert_eq!(legal.status, 200, "{}", legal.body);
    assert_not_cached(&legal, "inbox");
    assert_eq!(approval(ns, "opsgate.review")["status"]["phase"], "Pending");
}

/// The gate page shows what is approved (issue 22): alice reads the plan's outputs and the end of
/// its log on the page, as herself, with a `<script>` line shown as text, and the whole log a
/// click away; bob, who may read the gate but not the log, sees the API server's refusal.
#[test]
fn the_gate_page_shows_the_evidence_as_the_person() {
    common::require_real_node();
    let ns = test_namespace("ui-evidence");
    let ns = ns.name();
    let _op = Operator::start(ns);
    let_bob_watch(ns);
    apply(
        ns,
        r#"apiVersion: hitl.dev/v1alpha1
kind: Workflow
metadata: {name: tf}
spec:
  podTemplate: {nodeSelector: {hitl.dev/node: real}}
  steps:
    - name: plan
      container:
        image: busybox:1.36
        command: [sh, -c]
        args:
          - |
            for i in $(seq 1 300); do echo "+ aws_iam_role.r$i will be created"; done
            echo '<script>document.title="owned"</script><img src=x onerror=alert(1)>'
            echo '{"adds": 300}' > /dev/termination-log
    - name: approve-apply
      suspend:
        message: "Apply this plan to production?"
        approvers: {users: [alice]}
        evidence: [{step: plan, logs: true}]
"#,
    );
    let gate = wait_pending(ns, "tf.approve-apply");
    let pod = gate["spec"]["evidencePods"][0]["pod"].as_str().unwrap().to_string();

    let alice = UiServer::local("alice", ns);
    let browser = Browser::start();
    browser.goto(&alice.url);
    browser.goto(&format!("{}/gates/{ns}/tf.approve-apply", alice.base()));
    let evidence = browser.wait_text("#evidence", "aws_iam_role.r300 will be created", WAIT);
    assert!(evidence.contains("301 lines,"), "the whole log's size: {evidence}");
    assert!(evidence.contains(r#"{"adds":"300"}"#), "the outputs: {evidence}");
    assert!(evidence.contains(r#"<script>document.title="owned"</script><img src=x onerror=alert(1)>"#), "{evidence}");
    assert!(!browser.exists("#evidence script") && !browser.exists("#evidence img"), "a log line is text");
    assert_ne!(browser.script("return document.title"), "owned");
    screenshot(&browser, "gate-evidence");

    let cookie = session_cookie(&alice);
    let whole = http(
        None,
        alice.addr,
        "GET",
        &format!("/gates/{ns}/tf.approve-apply/evidence/{pod}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(whole.status, 200, "{whole:?}");
    assert_eq!(whole.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(
        whole.body.contains("+ aws_iam_role.r1 will be created") && whole.body.contains("r300 will"),
        "{}",
        whole.body
    );
    let other = http(
        None,
        alice.addr,
        "GET",
        &format!("/gates/{ns}/tf.approve-apply/evidence/kube-apiserver"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(other.status, 404, "only the gate's own evidence Pods: {other:?}");

    // bob may read the gate (and the run) but not the plan's log: the page says so in the API
    // server's words, and the whole log is refused too.
    let bob = UiServer::local("bob", ns);
    browser.goto(&bob.url);
    browser.goto(&format!("{}/gates/{ns}/tf.approve-apply", bob.base()));
    let refused = browser.wait_text("#evidence", "cannot be shown", WAIT);
    assert!(refused.contains("forbidden") && refused.contains("bob"), "{refused}");
    assert!(!refused.contains("aws_iam_role"), "{refused}");
    let cookie = session_cookie(&bob);
    let whole = http(
        None,
        bob.addr,
        "GET",
        &format!("/gates/{ns}/tf.approve-apply/evidence/{pod}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(whole.status, 403, "{whole:?}");

    // alice approves on the page: what it showed her is on the record of her decision.
    browser.goto(&format!("{}/gates/{ns}/tf.approve-apply", alice.base()));
    browser.wait_text("#evidence", "301 lines", WAIT);
    browser.click("#approve");
    browser.wait_text("#outcome", "Approved", WAIT);
    let decided = approval(ns, "tf.approve-apply");
    let seen = decided["spec"]["evidenceSeen"].as_str().unwrap_or_default().to_string();
    assert!(seen.starts_with(&format!("{pod}: 301 lines, ")), "{decided}");
    let told = events(ns, "tf.approve-apply");
    assert!(told.iter().any(|e| e.starts_with("Approved:") && e.contains(&seen)), "{told:?}");
}
