//! One Workflow's CEL must not take the operator down (issue 8). Someone who may only create
//! Workflows submits, at once: the reported 80 KB `{{ 1 + 1 + ... }}` template (it overflowed the
//! operator's stack: SIGABRT, on every restart), a 16 KB one that the CRD lets through (its parse
//! alone overflowed a runtime thread's stack), the reported 954-character `when` of ten nested
//! `all()` (it never finished, and blocked a runtime thread), and an expression within every
//! static bound that still runs for seconds. Next to them a normal Workflow must succeed, and the
//! operator process must be the same one, answering /healthz, with bounded memory.

mod common;
mod harness;

use std::time::{Duration, Instant};

use common::{apply_ok, kubectl_stdin, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// Peak resident memory of the operator, in MiB, that the test allows. Measured: 33-34 MiB peak
/// over this test on a debug build (the test prints it); the old operator aborted or spun instead.
const MAX_RSS_MIB: u64 = 64;

/// A Role that lets bob create and read Workflows in `ns`, and nothing else.
fn let_bob_create_workflows(ns: &str) {
    apply_ok(
        "admin",
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: workflow-author, namespace: {ns}}}\n\
             rules: [{{apiGroups: [hitl.dev], resources: [workflows], verbs: [create, get]}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: bob-workflow-author, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: workflow-author}}\n\
             subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}}]\n"
        ),
    );
}

/// A Workflow with one parameter and the given steps (YAML list items, JSON-quoted strings).
fn workflow(name: &str, param: &str, steps: &str) -> String {
    format!(
        "apiVersion: hitl.dev/v1alpha1\nkind: Workflow\nmetadata: {{name: {name}}}\n\
         spec:\n  params: [{{name: s, value: {param:?}}}]\n  steps:\n{steps}"
    )
}

fn container_step(name: &str, arg: &str) -> String {
    format!("  - name: {name}\n    container: {{image: busybox:1.36, args: [echo, {arg:?}]}}\n")
}

/// `1 + 1 + ... + 1`, `n` terms.
fn chain(n: usize, sep: &str) -> String {
    vec!["1"; n].join(sep)
}

/// `kubectl apply` as bob; Ok(stdout) or Err(stderr). Waits out the moment before the API
/// server's authorizer has seen his new RoleBinding.
fn apply_as_bob(ns: &str, yaml: &str) -> Result<String, String> {
    wait_for("bob's RoleBinding to take effect", Duration::from_secs(20), || {
        let out = kubectl_stdin("bob", &["-n", ns, "apply", "-f", "-"], yaml);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match out.status.success() {
            true => Some(Ok(text(&out.stdout))),
            false if text(&out.stderr).contains("is forbidden") => None,
            false => Some(Err(text(&out.stderr))),
        }
    })
}

/// VmRSS and VmHWM (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Fails the test when the operator process died (was restarted, crashed, aborted).
fn assert_alive(op: &mut Operator, pid: u32) {
    assert!(op.is_running(), "the operator process exited; its log: {}", op.log.display());
    assert_eq!(op.pid(), pid, "the operator was restarted");
    let health = op.http_get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "/healthz: {health}");
}

#[test]
fn cel_bombs_fail_alone_and_the_operator_keeps_running() {
    let ns = test_namespace("cel-bomb");
    let ns = ns.name.as_str();
    let mut op = Operator::start(ns);
    let pid = op.pid();
    let_bob_create_workflows(ns);

    // The reported 80 KB template: the CRD refuses it.
    let big = workflow("big", "", &container_step("add", &format!("{{{{ {} }}}}", chain(20_000, " + "))));
    let refused = apply_as_bob(ns, &big).expect_err("the 80 KB template is refused at apply");
    assert!(refused.contains("Too long: may not be more than 16384 bytes"), "{refused}");

    // Everything else is accepted by the API server and submitted together.
    let deep = workflow("deep", "", &container_step("add", &format!("{{{{ {} }}}}", chain(8_000, "+"))));
    let list = format!("[{}]", (0..30).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    let when = (0..10).rev().fold("true".to_string(), |inner, i| format!("{list}.all(x{i}, {inner})"));
    assert_eq!(when.len(), 914, "fits the CRD's maxLength");
    let nested = workflow(
        "nested",
        "",
        &format!("  - name: check\n    when: {when:?}\n    container: {{image: busybox:1.36}}\n"),
    );
    let slow_when = "params.s.split('').all(a, params.s.split('').all(b, a == b))";
    let slow = workflow(
        "slow",
        &"x".repeat(2000),
        &format!("  - name: check\n    when: {slow_when:?}\n    container: {{image: busybox:1.36}}\n"),
    );
    let normal = workflow(
        "normal",
        "doc.pdf",
        &format!(
            "{}  - name: sign\n    when: \"steps.scan.phase == 'Succeeded' && params.s.endsWith('.pdf')\"\n    container: {{image: busybox:1.36, args: [echo, '{{{{ params.s }}}}']}}\n",
            container_step("scan", "scanning {{ params.s }}")
        ),
    );
    let start = Instant::now();
    for yaml in [&deep, &nested, &slow, &normal] {
        apply_as_bob(ns, yaml).unwrap_or_else(|e| panic!("bob may create Workflows: {e}"));
    }

    let wf = wait_phase(ns, "deep", "Failed", WAIT);
    let deep_failed = start.elapsed();
    assert_eq!(wf["status"]["reason"], "InvalidSpec", "{}", wf["status"]);
    let message = wf["status"]["message"].as_str().unwrap();
    assert!(message.contains("container.args[1]") && message.contains("is 15999 characters long; the limit is 1024"));

    let wf = wait_phase(ns, "nested", "Failed", WAIT);
    let nested_failed = start.elapsed();
    assert_eq!(wf["status"]["reason"], "InvalidSpec", "{}", wf["status"]);
    let message = wf["status"]["message"].as_str().unwrap();
    assert!(message.contains("step check: when") && message.contains("nests 10 comprehensions"), "{message}");
    assert!(message.contains("the limit is 2"), "{message}");

    let wf = wait_phase(ns, "slow", "Failed", WAIT);
    let check = step(&wf, "check");
    assert_eq!(check["reason"], "ExpressionError", "{check}");
    let message = check["message"].as_str().unwrap();
    assert!(message.contains("took longer than 1s"), "{message}");
    let slow_failed = start.elapsed();

    wait_phase(ns, "normal", "Succeeded", WAIT);
    let normal_done = start.elapsed();
    for name in ["deep", "nested", "slow"] {
        assert!(pods(ns, name).is_empty(), "no Pod starts for {name}");
    }
    assert_eq!(pods(ns, "normal").len(), 2);

    assert_alive(&mut op, pid);
    let (rss, peak) = memory_kib(pid);
    println!(
        "cel_bomb: after the applies, deep failed at {deep_failed:?}, nested at {nested_failed:?}, slow at \
         {slow_failed:?}, normal succeeded at {normal_done:?}; operator RSS {} MiB, peak {} MiB (bound {MAX_RSS_MIB} MiB)",
        rss / 1024,
        peak / 1024
    );
    assert!(peak / 1024 < MAX_RSS_MIB, "peak RSS {} MiB", peak / 1024);
}

/// What the CRD can check without going over the API server's CEL cost budget is refused at
/// apply, with a message naming the step and the field.
#[test]
fn over_budget_strings_are_refused_at_apply() {
    let ns = test_namespace("cel-budget");
    let steps = |step: String| workflow("w", "", &step);
    let cases = [
        (
            steps(container_step("a", &"x".repeat(16_385))),
            "spec.steps[0].container.args[1]: Too long: may not be more than 16384 bytes",
        ),
        (
            steps(format!("  - name: a\n    container: {{image: x, args: [{}]}}\n", vec!["y"; 257].join(","))),
            "spec.steps[0].container.args: Too many: 257: must have at most 256 items",
        ),
        (
            steps(format!(
                "  - name: a\n    container: {{image: x, env: [{{name: E, value: {:?}}}]}}\n",
                "x".repeat(16_385)
            )),
            "step a: container.env values may be at most 16384 characters long",
        ),
        (
            steps(format!("  - name: a\n    suspend: {{message: {:?}}}\n", vec!["{{ 1 }}"; 17].join(" "))),
            "step a: suspend.message may hold at most 16 {{ }} expressions",
        ),
        (
            steps(format!("  - name: a\n    when: {:?}\n    sleep: 1s\n", "true ".repeat(205))),
            "spec.steps[0].when: Too long: may not be more than 1024 bytes",
        ),
    ];
    for (yaml, want) in cases {
        let refused = apply_refused(&ns.name, &yaml);
        assert!(refused.contains(want), "expected {want:?} in:\n{refused}");
    }
}
