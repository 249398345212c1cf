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

use common::watch::Watch;
use common::{apply_ok, kubectl_stdin, test_namespace, wait_for};
use harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// The tests that make the operator evaluate for seconds take turns: each measures a limit of the
/// evaluators (memory, time, fairness), and on 2 cores one test's twelve slow evaluations would
/// starve another's memory bomb of CPU until the time limit stopped it first.
static EVALUATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    EVALUATING.lock().unwrap_or_else(|e| e.into_inner())
}

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
    let _turn = take_turn();
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

/// `name value` of a metric line on the operator's /metrics page, e.g.
/// `hitl_expression_evaluations_stopped_total{limit="memory"}`.
fn metric(op: &Operator, series: &str) -> f64 {
    let page = op.metrics();
    let line = page.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in:\n{page}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

const STOPPED_FOR_MEMORY: &str = "hitl_expression_evaluations_stopped_total{limit=\"memory\"}";
const STOPPED_FOR_TIME: &str = "hitl_expression_evaluations_stopped_total{limit=\"time\"}";

/// The reported memory bomb (issue 26.9): a 4 KiB parameter replaced into itself. Each
/// `params.p.replace('a', params.p)` is 16 MiB; 32 of them in a list are 512 MiB, which took the
/// operator from 26 to 540 MiB, past the chart's limit, on every restart. Now the evaluation
/// runs out of its own memory, its step fails saying so, the operator stays small, and a
/// restarted operator does not evaluate it again.
#[test]
fn a_memory_bomb_fails_its_step_and_a_restart_leaves_it_failed() {
    let _turn = take_turn();
    let ns = test_namespace("cel-memory");
    let ns = ns.name.as_str();
    let mut op = Operator::start(ns);
    let pid = op.pid();
    let_bob_create_workflows(ns);
    let items = (1..=32).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let bomb_when = format!("[{items}].map(i, params.s.replace('a', params.s)).size() > 0");
    let bomb = workflow(
        "bomb",
        &"a".repeat(4096),
        &format!("  - name: check\n    when: {bomb_when:?}\n    container: {{image: busybox:1.36}}\n"),
    );
    let template_bomb = workflow(
        "template-bomb",
        &"a".repeat(4096),
        &container_step("echo", &format!("{{{{ [{items}].map(i, params.s.replace('a', params.s)) }}}}")),
    );
    for yaml in [&bomb, &template_bomb, &workflow("normal", "doc", &container_step("scan", "{{ params.s }}"))] {
        apply_as_bob(ns, yaml).unwrap_or_else(|e| panic!("bob may create Workflows: {e}"));
    }
    for (name, step_name) in [("bomb", "check"), ("template-bomb", "echo")] {
        let wf = wait_phase(ns, name, "Failed", WAIT);
        let st = step(&wf, step_name);
        assert_eq!(st["reason"], "ExpressionError", "{st}");
        let message = st["message"].as_str().unwrap();
        assert!(message.contains("needed more than 64 MiB (the memory limit for evaluating expressions)"), "{message}");
        assert!(pods(ns, name).is_empty(), "no Pod starts for {name}");
    }
    wait_phase(ns, "normal", "Succeeded", WAIT);
    assert_alive(&mut op, pid);
    let (rss, peak) = memory_kib(pid);
    println!("cel_bomb memory: operator RSS {} MiB, peak {} MiB (bound {MAX_RSS_MIB} MiB)", rss / 1024, peak / 1024);
    assert!(peak / 1024 < MAX_RSS_MIB, "peak RSS {} MiB", peak / 1024);
    assert_eq!(metric(&op, STOPPED_FOR_MEMORY), 2.0);

    // A new operator process finds both failed in their status and evaluates neither again.
    op.terminate();
    op.restart();
    apply_as_bob(ns, &workflow("after", "doc", &container_step("scan", "{{ params.s }}"))).unwrap();
    wait_phase(ns, "after", "Succeeded", WAIT);
    assert_eq!(metric(&op, STOPPED_FOR_MEMORY), 0.0, "the restarted operator evaluated a bomb again");
    assert_eq!(phase(&harness::workflow(ns, "bomb")), "Failed");
}

/// Threads of a process with this name (`/proc/<pid>/task/*/comm`).
fn threads_named(pid: u32, name: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/<pid>/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

/// Whether a watch event shows Workflow `ns/name` in `phase`.
fn is(ev: &serde_json::Value, ns: &str, name: &str, phase: &str) -> bool {
    let wf = &ev["object"];
    wf["metadata"]["namespace"] == ns && wf["metadata"]["name"] == name && wf["status"]["phase"] == phase
}

/// Issue 26.10: a tenant's `when`s that run past the time limit are stopped, not left running,
/// and do not hold up another tenant. `flood` submits twelve of them (each would run ~30 s on a
/// debug build); `quiet` then submits one trivial Workflow, which must finish while flood's are
/// still being evaluated (one evaluation of each namespace in turn), and once flood's have
/// failed nothing of theirs runs on. Before: four abandoned evaluations made every other
/// evaluation wait, and the trivial Workflow took 71-86 s.
#[test]
fn one_tenants_slow_expressions_are_stopped_and_do_not_hold_up_another() {
    let _turn = take_turn();
    let (flood, quiet) = (test_namespace("cel-flood"), test_namespace("cel-quiet"));
    let (flood, quiet) = (flood.name.as_str(), quiet.name.as_str());
    let mut op = Operator::start_with(flood, "", &["--leader-elect=false", "--namespace", quiet]);
    let pid = op.pid();
    let_bob_create_workflows(flood);
    let_bob_create_workflows(quiet);
    let slow_when = "params.s.split('').all(a, params.s.split('').all(b, a == b))";
    let slow = |n: usize| {
        workflow(
            &format!("slow-{n}"),
            &"x".repeat(2000),
            &format!("  - name: check\n    when: {slow_when:?}\n    container: {{image: busybox:1.36}}\n"),
        )
    };
    const SLOW: usize = 12;
    // One watch over both namespaces: the API server's order of their phase changes.
    let watch = Watch::start(&["-A", "workflows.hitl.dev"]);
    let start = Instant::now();
    // In one apply, so that they all wait for evaluation at once.
    apply_as_bob(flood, &(0..SLOW).map(slow).collect::<Vec<_>>().join("---\n")).unwrap();
    let trivial = workflow("trivial", "no", "  - name: maybe\n    when: \"params.s == 'go'\"\n    sleep: 1s\n");
    let quiet_applied = Instant::now();
    apply_as_bob(quiet, &trivial).unwrap();
    wait_phase(quiet, "trivial", "Succeeded", WAIT);
    let quiet_took = quiet_applied.elapsed();
    let names: Vec<String> = (0..SLOW).map(|n| format!("slow-{n}")).collect();
    let still_evaluating = names.iter().filter(|n| phase(&harness::workflow(flood, n)) != "Failed").count();
    println!(
        "cel_flood: quiet's trivial Workflow Succeeded {quiet_took:?} after it was applied, with {still_evaluating} \
         of flood's {SLOW} slow Workflows still to fail"
    );
    for name in &names {
        let wf = wait_phase(flood, name, "Failed", WAIT);
        let message = step(&wf, "check")["message"].as_str().unwrap().to_string();
        assert!(message.contains("took longer than 1s") && message.contains("was stopped"), "{message}");
    }
    println!("cel_flood: flood's {SLOW} slow Workflows all Failed {:?} after the first apply", start.elapsed());
    // Fairness, in the order the API server saw it rather than by the test's clock: the trivial
    // Workflow succeeded before the last slow one failed.
    let events = watch.events();
    let trivial_done =
        events.iter().position(|ev| is(ev, quiet, "trivial", "Succeeded")).expect("the watch saw trivial succeed");
    // Each slow Workflow's first Failed event (later writes to a failed one are no evaluation).
    let first_failed: Vec<usize> = names
        .iter()
        .map(|n| events.iter().position(|ev| is(ev, flood, n, "Failed")).unwrap_or_else(|| panic!("no {n} Failed")))
        .collect();
    let failed_after = first_failed.iter().filter(|&&i| i > trivial_done).count();
    assert!(
        failed_after > 0,
        "the trivial Workflow's when waited until every slow one had been evaluated (watch event {trivial_done}, \
         slow ones failed at {first_failed:?})"
    );
    println!("cel_flood: the watch saw {failed_after} of flood's {SLOW} slow Workflows fail after quiet's succeeded");
    assert_eq!(metric(&op, STOPPED_FOR_TIME), SLOW as f64);
    wait_for("no evaluation left running in the operator", Duration::from_secs(10), || {
        (threads_named(pid, "cel-eval") == 0).then_some(())
    });
    assert_alive(&mut op, pid);
}

/// The evaluator processes (`hitl-operator cel-worker`) the operator `pid` has started: the
/// children of any of its threads.
fn evaluator_pids(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/<pid>/task");
    let children: String = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .collect::<Vec<_>>()
        .join(" ");
    let is_evaluator =
        |c: &u32| std::fs::read_to_string(format!("/proc/{c}/cmdline")).is_ok_and(|l| l.contains("cel-worker"));
    let mut found: Vec<u32> = children.split_whitespace().filter_map(|c| c.parse().ok()).filter(is_evaluator).collect();
    found.sort();
    found.dedup();
    found
}

/// An evaluator that dies while idle (killed from outside, or by anything but an expression) is
/// no verdict on the next expression: it runs in a new evaluator and its step succeeds. (The
/// workers once died with the short-lived thread that started them, failing the next `when`
/// with "Broken pipe".)
#[test]
fn an_evaluator_that_died_idle_fails_no_step() {
    let ns = test_namespace("cel-idle");
    let ns = ns.name.as_str();
    let op = Operator::start(ns);
    let gated = |name: &str| {
        workflow(name, "doc", "  - name: s\n    when: \"params.s == 'doc'\"\n    container: {image: busybox:1.36}\n")
    };
    apply(ns, &gated("first"));
    wait_phase(ns, "first", "Succeeded", WAIT);
    let idle = wait_for("an idle evaluator process", WAIT, || Some(evaluator_pids(op.pid())).filter(|p| !p.is_empty()));
    for pid in &idle {
        let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
        assert!(killed.success(), "kill -9 {pid}");
    }
    apply(ns, &gated("second"));
    let wf = wait_phase(ns, "second", "Succeeded", WAIT);
    assert_eq!(step(&wf, "s")["phase"], "Succeeded", "{wf}");
}
