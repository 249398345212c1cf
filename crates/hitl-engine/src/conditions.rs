//! Standard conditions, shared by Workflow and Approval status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One wanted condition: type, status ("True"/"False"), reason, message.
pub type Wanted<'a> = (&'a str, &'a str, &'a str, String);

/// The conditions to write. `lastTransitionTime` moves only when a condition's status changes: a
/// timestamp rewritten every pass would change the object and wake the controller forever.
pub fn merge(old: &[Condition], wanted: Vec<Wanted<'_>>, now: Time, generation: Option<i64>) -> Vec<Condition> {
    wanted
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let last = match old.iter().find(|c| c.type_ == type_) {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message,
                observed_generation: generation,
                last_transition_time: last,
            }
        })
        .collect()
}
