//! Which changes of a step Pod wake whom. Of the five or so changes a step Pod goes through
//! (created, bound to a node, container started, finished, finalizer released), the Workflow's
//! plan reads one: the outcome. Waking the Workflow only when the outcome changes (or the Pod is
//! deleted) saves the reconciles the others cost; the store still sees every change.
//!
//! A finished Pod whose finalizer is released has been recorded in its Workflow's status and is
//! never read again: it leaves the store (thousands of kept Workflows keep thousands of Pods).
//!
//! Pure (no client calls), but it takes the watcher's own events, so it lives with the watch in the
//! operator: the engine crate has no kube runtime to name them.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use kube::runtime::watcher::Event;

use crate::engine::names::FINALIZER_OUTCOME;
use crate::engine::plan::{active_pod_digest, pod_outcome_digest};

/// What one watch event wakes, and what the store should make of it.
#[derive(Debug, Default)]
pub struct Wake {
    /// The event for the store: the event itself, a deletion for a Pod it need not keep, or
    /// nothing for such a Pod while the watch lists.
    pub store: Option<Event<Pod>>,
    /// Pods whose owning Workflow should look again.
    pub workflows: Vec<Pod>,
    /// Pods being deleted while our finalizer holds them (the outcome controller's work).
    pub held: Vec<Pod>,
}

/// The outcome last seen of each step Pod, by UID.
#[derive(Default)]
pub struct PodChanges {
    known: HashMap<String, Known>,
    /// UIDs seen since the watch began listing again (None: not listing).
    relisting: Option<HashSet<String>>,
}

struct Known {
    outcome: u64,
    /// Name, namespace and owners: enough to wake the owner of a Pod that went while the watch
    /// was re-listing (the list does not say what is gone).
    identity: Pod,
}

impl PodChanges {
    pub fn route(&mut self, event: Event<Pod>) -> Wake {
        let mut wake = Wake::default();
        match event {
            Event::Init => {
                self.relisting = Some(HashSet::new());
                wake.store = Some(Event::Init);
            }
            Event::InitApply(pod) => {
                if let Some(listed) = &mut self.relisting {
                    listed.insert(uid(&pod));
                }
                if self.applied(&pod, &mut wake) {
                    wake.store = Some(Event::InitApply(pod));
                }
            }
            Event::Apply(pod) => {
                let keep = self.applied(&pod, &mut wake);
                wake.store = Some(if keep { Event::Apply(pod) } else { Event::Delete(pod) });
            }
            Event::Delete(pod) => {
                self.known.remove(&uid(&pod));
                wake.workflows.push(pod.clone());
                wake.store = Some(Event::Delete(pod));
            }
            Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let gone: Vec<String> = self.known.keys().filter(|u| !listed.contains(*u)).cloned().collect();
                wake.workflows.extend(gone.iter().filter_map(|u| self.known.remove(u)).map(|k| k.identity));
                wake.store = Some(Event::InitDone);
            }
        }
        wake
    }

    /// Pods tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.known.len()
    }

    /// Routes a Pod that was created or changed; false when it is done with (finished and
    /// released) and leaves the store and this table.
    fn applied(&mut self, pod: &Pod, wake: &mut Wake) -> bool {
        let outcome = pod_outcome_digest(pod);
        let active = active_pod_digest();
        let before = self.known.get(&uid(pod)).map_or(active, |k| k.outcome);
        let held = pod.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER_OUTCOME);
        if held && pod.metadata.deletion_timestamp.is_some() {
            wake.held.push(pod.clone());
        }
        if outcome != before {
            wake.workflows.push(pod.clone());
        }
        let done_with = !held && outcome != active;
        if done_with {
            self.known.remove(&uid(pod));
        } else {
            self.known.insert(uid(pod), Known { outcome, identity: identity(pod) });
        }
        !done_with
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn identity(pod: &Pod) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            owner_references: pod.metadata.owner_references.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(uid: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("wf.{uid}")),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                finalizers: Some(vec![FINALIZER_OUTCOME.into()]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    fn finished(uid: &str, phase: &str, exit_code: i32, message: &str) -> Pod {
        let mut p = pod(uid, phase);
        let terminated = ContainerStateTerminated { exit_code, message: Some(message.into()), ..Default::default() };
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "main".into(),
            state: Some(ContainerState { terminated: Some(terminated), ..Default::default() }),
            ..Default::default()
        }]);
        p
    }

    fn names(pods: &[Pod]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
    }

    #[test]
    fn a_step_pods_life_wakes_its_workflow_once_when_it_finishes() {
        let mut changes = PodChanges::default();
        let mut woken = vec![];
        let mut bound = pod("a", "Pending");
        bound.spec = Some(Default::default());
        let mut released = finished("a", "Succeeded", 0, r#"{"n":"1"}"#);
        released.metadata.finalizers = None;
        for event in
            [pod("a", "Pending"), bound, pod("a", "Running"), finished("a", "Succeeded", 0, r#"{"n":"1"}"#), released]
        {
            woken.extend(names(&changes.route(Event::Apply(event)).workflows));
        }
        assert_eq!(woken, ["wf.a"]);
        assert_eq!(changes.tracked(), 0, "a finished, released Pod is forgotten");
    }

    #[test]
    fn the_store_keeps_the_pods_a_pass_may_read() {
        let mut changes = PodChanges::default();
        let stored = |w: Wake| match w.store {
            Some(Event::Apply(_)) => "kept",
            Some(Event::Delete(_)) => "dropped",
            Some(Event::InitApply(_)) => "listed",
            None => "skipped",
            _ => "other",
        };
        assert_eq!(stored(changes.route(Event::Apply(pod("a", "Running")))), "kept");
        // Finished but not yet recorded (the finalizer holds it): the next pass reads it.
        assert_eq!(stored(changes.route(Event::Apply(finished("a", "Succeeded", 0, "")))), "kept");
        let mut released = finished("a", "Succeeded", 0, "");
        released.metadata.finalizers = None;
        assert_eq!(stored(changes.route(Event::Apply(released.clone()))), "dropped");
        // A Pod still running whose finalizer is gone (a person removed it) stays.
        let mut running = pod("b", "Running");
        running.metadata.finalizers = None;
        assert_eq!(stored(changes.route(Event::Apply(running))), "kept");
        changes.route(Event::Init);
        assert_eq!(stored(changes.route(Event::InitApply(released))), "skipped");
        assert_eq!(stored(changes.route(Event::InitApply(finished("c", "Failed", 1, "")))), "listed");
    }

    #[test]
    fn what_the_plan_reads_wakes_the_workflow() {
        let mut changes = PodChanges::default();
        changes.route(Event::Apply(pod("a", "Running")));
        // A different outcome message (the step's outputs) is a different outcome.
        assert_eq!(names(&changes.route(Event::Apply(finished("a", "Failed", 1, "x"))).workflows), ["wf.a"]);
        assert_eq!(names(&changes.route(Event::Apply(finished("a", "Failed", 2, "x"))).workflows), ["wf.a"]);
        assert!(changes.route(Event::Apply(finished("a", "Failed", 2, "x"))).workflows.is_empty());
        let mut going = pod("b", "Running");
        going.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let wake = changes.route(Event::Apply(going.clone()));
        assert_eq!(names(&wake.workflows), ["wf.b"], "a Pod being deleted before it finished has vanished");
        assert_eq!(names(&wake.held), ["wf.b"], "and the outcome controller hears of it while the finalizer holds");
        assert_eq!(names(&changes.route(Event::Delete(going)).workflows), ["wf.b"]);
        assert_eq!(changes.tracked(), 1);
    }

    #[test]
    fn a_pod_gone_while_the_watch_relisted_wakes_its_workflow() {
        let mut changes = PodChanges::default();
        changes.route(Event::Apply(pod("a", "Running")));
        changes.route(Event::Apply(pod("b", "Running")));
        assert!(changes.route(Event::Init).workflows.is_empty());
        assert!(changes.route(Event::InitApply(pod("b", "Running"))).workflows.is_empty());
        let done = changes.route(Event::InitDone);
        assert_eq!(names(&done.workflows), ["wf.a"]);
        assert_eq!(changes.tracked(), 1);
    }

    #[test]
    fn a_pod_first_seen_finished_wakes_its_workflow() {
        let mut changes = PodChanges::default();
        changes.route(Event::Init);
        assert_eq!(names(&changes.route(Event::InitApply(finished("a", "Succeeded", 0, ""))).workflows), ["wf.a"]);
        assert!(changes.route(Event::InitApply(pod("b", "Pending"))).workflows.is_empty());
    }

    /// What can happen to a step Pod, in the order the world allows: its phase only moves on
    /// (to one terminal outcome), a deletion once begun stays, a released finalizer stays gone.
    #[derive(Clone, Copy, Debug)]
    enum Change {
        /// Bound, a condition, a label: nothing the plan reads.
        Touch,
        Run,
        Finish {
            failed: bool,
            exit: i32,
            outputs: bool,
        },
        BeginDeletion,
        Release,
        Delete,
    }

    fn change() -> impl proptest::strategy::Strategy<Value = (usize, Change)> {
        use proptest::prelude::*;
        let change = prop_oneof![
            Just(Change::Touch),
            Just(Change::Run),
            (any::<bool>(), 0..3i32, any::<bool>()).prop_map(|(failed, exit, outputs)| Change::Finish {
                failed,
                exit,
                outputs
            }),
            Just(Change::BeginDeletion),
            Just(Change::Release),
            Just(Change::Delete),
        ];
        (0..3usize, change)
    }

    /// The Pod after `change`, or None when it is deleted outright.
    fn after(current: Option<Pod>, uid: &str, change: Change) -> Option<Pod> {
        let mut p = current.unwrap_or_else(|| pod(uid, "Pending"));
        let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let finished_already = phase == "Succeeded" || phase == "Failed";
        match change {
            Change::Touch => p.metadata.labels = Some([("touched".to_string(), "yes".to_string())].into()),
            Change::Run if !finished_already => p.status.as_mut().unwrap().phase = Some("Running".into()),
            Change::Finish { failed, exit, outputs } if !finished_already => {
                let (deleting, finalizers) = (p.metadata.deletion_timestamp.clone(), p.metadata.finalizers.clone());
                let phase = if failed { "Failed" } else { "Succeeded" };
                p = finished(uid, phase, exit, if outputs { r#"{"n":1}"# } else { "" });
                (p.metadata.deletion_timestamp, p.metadata.finalizers) = (deleting, finalizers);
            }
            Change::BeginDeletion => p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            Change::Release => p.metadata.finalizers = None,
            Change::Delete => return None,
            _ => {}
        }
        Some(p)
    }

    proptest::proptest! {
        /// Whatever the order of changes, a Workflow is woken whenever what its plan reads of a
        /// Pod changes (its outcome, or that it is gone), and the store holds every Pod a pass
        /// may still read: one not finished, or finished and not yet released.
        #[test]
        fn no_change_the_plan_reads_goes_unnoticed(changes in proptest::collection::vec(change(), 1..40)) {
            let mut routing = PodChanges::default();
            let mut world: HashMap<&str, Pod> = HashMap::new();
            let mut stored: HashMap<&str, Pod> = HashMap::new();
            for (which, change) in changes {
                let uid = ["a", "b", "c"][which];
                let before = world.get(uid).map_or(active_pod_digest(), pod_outcome_digest);
                let now = after(world.get(uid).cloned(), uid, change);
                let event = match (&now, world.get(uid)) {
                    (Some(p), _) => Event::Apply(p.clone()),
                    (None, Some(gone)) => Event::Delete(gone.clone()),
                    (None, None) => continue,
                };
                let wake = routing.route(event);
                match wake.store {
                    Some(Event::Apply(p)) => { stored.insert(uid, p); }
                    Some(Event::Delete(_)) => { stored.remove(uid); }
                    other => proptest::prop_assert!(false, "unexpected {:?}", other),
                }
                let woken = wake.workflows.iter().any(|w| w.metadata.uid.as_deref() == Some(uid));
                match &now {
                    None => proptest::prop_assert!(woken, "{} deleted unnoticed", uid),
                    Some(p) => {
                        if pod_outcome_digest(p) != before {
                            proptest::prop_assert!(woken, "{}'s outcome changed unnoticed", uid);
                        }
                        let held = p.metadata.finalizers.is_some();
                        if held || pod_outcome_digest(p) == active_pod_digest() {
                            proptest::prop_assert_eq!(stored.get(uid), Some(p));
                        }
                    }
                }
                match now {
                    Some(p) => { world.insert(uid, p); }
                    None => { world.remove(uid); }
                }
            }
        }
    }
}
