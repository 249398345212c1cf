//! Workflow passes that could only read back what the operator itself just wrote (#24).
//!
//! A pass that recorded its plan leaves the Workflow at a resourceVersion the operator knows, and
//! its children as they were when the pass began. While both stay so, another pass would compute
//! the same plan from the same inputs: the one woken by the operator's own status write, or by a
//! watch that lists again. It is skipped, until the plan's own deadline comes. Any child event
//! (a Pod or Approval of the run, created, changed or deleted), any write by someone else, or a
//! pass that did not record its plan makes the next pass a full one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

/// Entries kept before a map is emptied (runs deleted without a last pass leave theirs);
/// emptying costs each run one full pass.
const KEPT: usize = 50_000;

#[derive(Default)]
pub struct Settled {
    /// A sequence shared by every run, so a count that was emptied never comes back to a value
    /// a recorded pass holds.
    sequence: AtomicU64,
    /// Per Workflow UID: the sequence number of its latest child event.
    child_events: Mutex<HashMap<String, u64>>,
    /// Per Workflow UID: what its last recorded pass left.
    passes: Mutex<HashMap<String, Pass>>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Pass {
    resource_version: u64,
    child_event: u64,
    wake_at: Option<Timestamp>,
}

/// What a pass about to begin may do.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Nothing changed since the last recorded pass: wake again at its deadline, if any.
    Skip { wake_at: Option<Timestamp> },
    /// Run the pass; `child_event` is where the run's children stood as it began.
    Run { child_event: u64 },
}

impl Settled {
    /// A Pod or Approval owned by Workflow `owner_uid` changed (as its watch saw it).
    pub fn child_changed(&self, owner_uid: &str) {
        let at = self.sequence.fetch_add(1, Ordering::SeqCst) + 1;
        let mut events = self.child_events.lock().expect("lock");
        if events.len() >= KEPT && !events.contains_key(owner_uid) {
            // With the counts, the passes that rest on them: none may be skipped on a lost count.
            events.clear();
            self.passes.lock().expect("lock").clear();
        }
        events.insert(owner_uid.to_string(), at);
    }

    /// Whether the pass over Workflow `uid` at `resource_version` may be skipped at `now`. A
    /// pass that runs forgets the last one: only a pass that records its plan settles the run.
    pub fn next(&self, uid: &str, resource_version: Option<u64>, now: Timestamp) -> Next {
        let child_event = self.child_events.lock().expect("lock").get(uid).copied().unwrap_or(0);
        let mut passes = self.passes.lock().expect("lock");
        let unchanged = passes.get(uid).filter(|p| {
            Some(p.resource_version) == resource_version
                && p.child_event == child_event
                && p.wake_at.is_none_or(|at| now < at)
        });
        match unchanged {
            Some(pass) => Next::Skip { wake_at: pass.wake_at },
            None => {
                passes.remove(uid);
                Next::Run { child_event }
            }
        }
    }

    /// The pass over `uid` that began at `child_event` recorded its plan; the Workflow is now at
    /// `resource_version` and wants a pass at `wake_at`.
    pub fn recorded(&self, uid: &str, resource_version: u64, child_event: u64, wake_at: Option<Timestamp>) {
        let mut passes = self.passes.lock().expect("lock");
        if passes.len() >= KEPT && !passes.contains_key(uid) {
            passes.clear();
        }
        passes.insert(uid.to_string(), Pass { resource_version, child_event, wake_at });
    }

    /// The Workflow is going: nothing of it is kept.
    pub fn forget(&self, uid: &str) {
        self.passes.lock().expect("lock").remove(uid);
        self.child_events.lock().expect("lock").remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn settled_at(rv: u64, wake_at: Option<Timestamp>) -> (Settled, u64) {
        let settled = Settled::default();
        settled.child_changed("wf");
        let Next::Run { child_event } = settled.next("wf", Some(rv - 1), at(0)) else { panic!("first pass runs") };
        settled.recorded("wf", rv, child_event, wake_at);
        (settled, child_event)
    }

    #[test]
    fn the_pass_woken_by_our_own_write_is_skipped_until_the_deadline() {
        let (settled, _) = settled_at(7, Some(at(10)));
        assert_eq!(settled.next("wf", Some(7), at(9)), Next::Skip { wake_at: Some(at(10)) });
        assert!(matches!(settled.next("wf", Some(7), at(10)), Next::Run { .. }), "the deadline brings a pass");
    }

    #[test]
    fn a_write_by_someone_else_or_a_child_event_brings_a_full_pass() {
        let (settled, _) = settled_at(7, None);
        assert!(matches!(settled.next("wf", Some(8), at(1)), Next::Run { .. }), "a newer Workflow");
        let (settled, child_event) = settled_at(7, None);
        settled.child_changed("wf");
        assert!(matches!(settled.next("wf", Some(7), at(1)), Next::Run { child_event: c } if c > child_event));
        let (settled, _) = settled_at(7, None);
        settled.child_changed("another-run");
        assert_eq!(settled.next("wf", Some(7), at(1)), Next::Skip { wake_at: None }, "another run's child");
    }

    #[test]
    fn a_pass_that_ran_without_recording_leaves_nothing_to_skip_on() {
        let (settled, _) = settled_at(7, None);
        settled.child_changed("wf");
        let _ = settled.next("wf", Some(7), at(1));
        // That pass failed: it recorded nothing, and the child event it saw is no longer new.
        assert!(matches!(settled.next("wf", Some(7), at(2)), Next::Run { .. }));
    }

    #[test]
    fn emptied_counts_never_match_an_earlier_pass() {
        let (settled, _) = settled_at(7, None);
        for n in 0..KEPT {
            settled.child_changed(&format!("run-{n}"));
        }
        assert!(matches!(settled.next("wf", Some(7), at(1)), Next::Run { .. }), "its pass went with the counts");
    }
}
