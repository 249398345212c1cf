//! Who wrote what a run runs, besides the person who sent it: the people separation of duties
//! keeps from deciding its gates.

use hitl_api::Workflow;
use hitl_api::workflow::{ANNOTATION_AUTHORS, ANNOTATION_CREATED_BY, authors_of};

/// The authors of a run's CronWorkflow (recorded on the run when the operator created it) and of
/// its WorkflowTemplate (recorded in status when it was resolved), without the run's creator,
/// each once, sorted.
pub fn of_run(wf: &Workflow) -> Vec<String> {
    let annotations = wf.metadata.annotations.as_ref();
    let creator = annotations.and_then(|a| a.get(ANNOTATION_CREATED_BY));
    let from_cron = annotations.and_then(|a| a.get(ANNOTATION_AUTHORS)).map(|v| authors_of(v)).unwrap_or_default();
    let from_template = wf.status.as_ref().and_then(|s| s.template.as_ref()).map(|t| t.authors.clone());
    let mut authors: Vec<String> =
        from_cron.into_iter().chain(from_template.unwrap_or_default()).filter(|a| Some(a) != creator).collect();
    authors.sort();
    authors.dedup();
    authors
}

#[cfg(test)]
mod tests {
    use super::*;
    use hitl_api::{ResolvedTemplate, WorkflowStatus};

    #[test]
    fn a_run_counts_its_crons_and_its_templates_authors_but_not_its_creator_twice() {
        let mut wf = Workflow::new("w", Default::default());
        wf.metadata.annotations = Some(
            [
                (ANNOTATION_CREATED_BY.to_string(), "system:serviceaccount:hitl-system:hitl-operator".to_string()),
                (ANNOTATION_AUTHORS.to_string(), "carol\ndave\n".to_string()),
            ]
            .into(),
        );
        let template = ResolvedTemplate { authors: vec!["erin".into(), "carol".into()], ..Default::default() };
        wf.status = Some(WorkflowStatus { template: Some(template), ..Default::default() });
        assert_eq!(of_run(&wf), ["carol", "dave", "erin"]);

        wf.metadata.annotations = Some([(ANNOTATION_CREATED_BY.to_string(), "erin".to_string())].into());
        assert_eq!(of_run(&wf), ["carol"], "the creator is createdBy already");
    }
}
