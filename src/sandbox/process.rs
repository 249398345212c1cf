//! The operator's end of one evaluator process: send a request, read the answer within the
//! time limit, and when the limit passes or the process dies, kill it and say why.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::worker::Line;
use crate::engine::cel_task::{Answered, Request};

/// What the Rust runtime prints when an allocation fails (then it aborts): the worker hit its
/// memory limit.
const ALLOCATION_FAILED: &str = "memory allocation of";

pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Evaluations answered so far.
    pub answered: usize,
}

/// How one evaluation in a worker ended, with the expression that ran last.
pub enum Outcome {
    Answered(Answered),
    /// The time limit passed; the worker was killed.
    TimedOut,
    /// The worker died of its memory limit.
    OutOfMemory,
    /// The worker died otherwise: why, as far as it can be told.
    Died(String),
    /// The worker was gone before it got the request (it died idle): nothing was evaluated.
    Gone(String),
}

impl Worker {
    /// Starts `exe cel-worker --memory-limit-mib <mib>`.
    pub fn start(exe: &Path, memory_mib: u64) -> std::io::Result<Self> {
        let mut child = Command::new(exe)
            .args(["cel-worker", "--memory-limit-mib", &memory_mib.to_string()])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (send, lines) = channel();
        // Ends when the worker's stdout closes (it exited or was killed).
        std::thread::Builder::new().name("cel-worker-reader".into()).spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        })?;
        Ok(Self { child, stdin, lines, answered: 0 })
    }

    /// Evaluates `request` within `limit`; `running` is kept at the expression that ran last.
    /// After any outcome but `Answered` the worker is dead: drop it.
    pub fn evaluate(&mut self, request: &Request, limit: Duration, running: &mut (usize, String)) -> Outcome {
        let sent = serde_json::to_string(request).map_err(std::io::Error::other).and_then(|text| {
            writeln!(self.stdin, "{text}")?;
            self.stdin.flush()
        });
        if let Err(e) = sent {
            return match self.death(format!("could not send the request: {e}")) {
                Outcome::Died(why) => Outcome::Gone(why),
                other => other,
            };
        }
        let deadline = Instant::now() + limit;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(wait) {
                Ok(line) => match serde_json::from_str::<Line>(&line) {
                    Ok(Line::Running(i, e)) => *running = (i, e),
                    Ok(Line::Done(answered)) => {
                        self.answered += 1;
                        return Outcome::Answered(answered);
                    }
                    Err(e) => return self.death(format!("answered something unreadable: {e}")),
                },
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Outcome::TimedOut;
                }
                Err(RecvTimeoutError::Disconnected) => return self.death(String::new()),
            }
        }
    }

    /// Why the worker stopped answering: it ran out of memory, or what it said and how it ended.
    fn death(&mut self, what: String) -> Outcome {
        self.kill();
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        if stderr.contains(ALLOCATION_FAILED) {
            return Outcome::OutOfMemory;
        }
        let status = self.child.try_wait().ok().flatten().map(|s| s.to_string()).unwrap_or_default();
        let said = stderr.lines().last().unwrap_or_default();
        Outcome::Died(
            [what.as_str(), said, &status].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join("; "),
        )
    }

    /// Stops the worker at once and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}
