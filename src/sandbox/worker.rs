//! The evaluator process (`hitl-operator cel-worker`): reads one JSON `Request` a line from
//! stdin, answers on stdout, until stdin closes. Its writable memory is limited with
//! RLIMIT_DATA, so an expression that builds a huge value fails an allocation and aborts this
//! process, never the operator; it exits when the operator dies (a watchdog on its parent).

use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};

use crate::engine::bounded::panic_text;
use crate::engine::cel_task::{Answered, Request, answer};

/// Stack of the evaluating thread. Measured (see `engine::bounded`): the static bounds need at
/// most ~6 MiB. Counted in RLIMIT_DATA, like every private writable mapping.
pub const STACK_MIB: u64 = 16;
/// Writable memory a worker needs besides an evaluation's: its own heap, buffers, the binary's
/// data. Measured: VmData of an idle worker is under 4 MiB.
pub const BASELINE_MIB: u64 = 8;

/// One line of a worker's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Line {
    /// The expression (index of its template, text) that starts now.
    Running(usize, String),
    Done(Answered),
}

/// Runs the worker until stdin closes; the process's exit code.
pub fn serve(memory_mib: u64) -> i32 {
    if let Err(e) = die_with_parent().and_then(|()| limit_memory(memory_mib + STACK_MIB + BASELINE_MIB)) {
        eprintln!("cel-worker: {e}");
        return 2;
    }
    let evaluator = std::thread::Builder::new().name("cel-worker".into()).stack_size((STACK_MIB << 20) as usize);
    match evaluator.spawn(answer_lines).map(|t| t.join()) {
        Ok(Ok(Ok(()))) => 0,
        Ok(Ok(Err(e))) => {
            eprintln!("cel-worker: {e}");
            1
        }
        Ok(Err(_)) | Err(_) => 1,
    }
}

fn answer_lines() -> std::io::Result<()> {
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let done = match serde_json::from_str::<Request>(&line?) {
            Ok(request) => {
                let mut progress = |i: usize, e: &str| write_line(&stdout, &Line::Running(i, e.to_string()));
                catch_unwind(AssertUnwindSafe(|| answer(&request, &mut progress)))
                    .unwrap_or_else(|p| Err((0, format!("evaluation panicked: {}", panic_text(p.as_ref())))))
            }
            Err(e) => Err((0, format!("the evaluator could not read its request: {e}"))),
        };
        write_line(&stdout, &Line::Done(done));
    }
    Ok(())
}

/// Writes one line and flushes it; a closed pipe means the operator has gone, so exit.
fn write_line(stdout: &std::io::Stdout, line: &Line) {
    let mut out = stdout.lock();
    let text = serde_json::to_string(line).expect("a Line serialises");
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Exits this process when the operator that started it dies. Not PR_SET_PDEATHSIG: that fires
/// when the *thread* that spawned the worker exits, and the operator starts workers from
/// short-lived threads, so idle workers were killed under it (seen as "Broken pipe" on the next
/// request). A watchdog thread sees the parent go (it is re-parented) within a second; an idle
/// worker also ends when its stdin closes.
fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: getppid has no preconditions and touches no memory of ours.
    let parent = unsafe { libc::getppid() };
    std::thread::Builder::new().name("cel-worker-watchdog".into()).stack_size(64 * 1024).spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            // SAFETY: as above.
            if unsafe { libc::getppid() } != parent {
                std::process::exit(3);
            }
        }
    })?;
    Ok(())
}

/// Limits the process's writable memory (heap, private mappings, thread stacks) to `mib` MiB.
fn limit_memory(mib: u64) -> std::io::Result<()> {
    let bytes = mib << 20;
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
