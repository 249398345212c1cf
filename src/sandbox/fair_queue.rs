//! Turns at the evaluators, shared out between namespaces in rotation: each namespace with an
//! evaluation waiting gets the next free evaluator in turn, whatever the number it has waiting.
//! One tenant's thousand slow `when`s then delay another tenant's one trivial `when` by at most
//! one evaluation per busy namespace, not by the thousand.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

pub struct FairQueue {
    state: Mutex<State>,
    granted: Condvar,
}

struct State {
    /// Evaluators free now.
    free: usize,
    /// Tickets waiting, per namespace, first come first.
    waiting: BTreeMap<String, VecDeque<u64>>,
    /// The namespace served last: the next turn goes to the one after it.
    last: Option<String>,
    /// Tickets given a turn that their thread has not yet taken.
    granted: BTreeSet<u64>,
    next_ticket: u64,
}

/// A turn at an evaluator; the next waiter's turn comes when it is dropped.
pub struct Turn<'a> {
    queue: &'a FairQueue,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.free += 1;
        grant(&mut st);
        self.queue.granted.notify_all();
    }
}

impl FairQueue {
    /// A queue for `evaluators` evaluations at once.
    pub fn new(evaluators: usize) -> Self {
        let state = State {
            free: evaluators.max(1),
            waiting: BTreeMap::new(),
            last: None,
            granted: BTreeSet::new(),
            next_ticket: 0,
        };
        Self { state: Mutex::new(state), granted: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for `namespace`'s turn. Blocks the calling thread: call it off the async runtime.
    pub fn wait_turn(&self, namespace: &str) -> Turn<'_> {
        let mut st = self.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.waiting.entry(namespace.to_string()).or_default().push_back(ticket);
        grant(&mut st);
        while !st.granted.remove(&ticket) {
            st = self.granted.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        Turn { queue: self }
    }

    /// Evaluations waiting for a turn.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }
}

/// Gives the free evaluators to the waiting namespaces in rotation.
fn grant(st: &mut State) {
    while st.free > 0 {
        let Some(ns) = next_namespace(&st.waiting, st.last.as_deref()) else { return };
        let queue = st.waiting.get_mut(&ns).expect("a waiting namespace");
        let ticket = queue.pop_front().expect("a namespace waits with a ticket");
        if queue.is_empty() {
            st.waiting.remove(&ns);
        }
        st.granted.insert(ticket);
        st.free -= 1;
        st.last = Some(ns);
    }
}

/// The waiting namespace after `last` in name order, wrapping round.
fn next_namespace(waiting: &BTreeMap<String, VecDeque<u64>>, last: Option<&str>) -> Option<String> {
    let after =
        last.and_then(|l| waiting.range::<str, _>((std::ops::Bound::Excluded(l), std::ops::Bound::Unbounded)).next());
    after.or_else(|| waiting.iter().next()).map(|(ns, _)| ns.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn waiting(names: &[&str]) -> BTreeMap<String, VecDeque<u64>> {
        names.iter().map(|n| (n.to_string(), VecDeque::from([1]))).collect()
    }

    #[test]
    fn namespaces_take_turns_in_rotation() {
        let w = waiting(&["a", "b", "c"]);
        assert_eq!(next_namespace(&w, None).as_deref(), Some("a"));
        assert_eq!(next_namespace(&w, Some("a")).as_deref(), Some("b"));
        assert_eq!(next_namespace(&w, Some("c")).as_deref(), Some("a"), "wraps round");
        assert_eq!(next_namespace(&w, Some("bb")).as_deref(), Some("c"), "the last one need not wait still");
        assert_eq!(next_namespace(&BTreeMap::new(), Some("a")), None);
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Three evaluations of namespace `flood` wait, then one of `quiet`: `quiet` is served second.
    #[test]
    fn a_namespace_with_many_waiting_does_not_keep_another_waiting() {
        let queue = Arc::new(FairQueue::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = queue.wait_turn("flood");
        let mut threads = vec![];
        for (n, ns) in ["flood", "flood", "flood", "quiet"].into_iter().enumerate() {
            let (theirs, order) = (queue.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _turn = theirs.wait_turn(ns);
                order.lock().unwrap().push(ns);
            }));
            wait_until("the evaluation to queue", || queue.waiting() == n + 1);
        }
        drop(held);
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*order.lock().unwrap(), ["quiet", "flood", "flood", "flood"], "flood had the turn before");
    }
}
