//! CronWorkflow decisions: when a run is due, whether it starts, what history goes. Pure: the
//! controller passes the Workflows it found and `now`, and carries the decision out.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use hitl_api::{ConcurrencyPolicy, CronWorkflowSpec};

/// Kept by default, as for a CronJob.
pub const DEFAULT_SUCCESSFUL_HISTORY: i32 = 3;
pub const DEFAULT_FAILED_HISTORY: i32 = 1;

/// A schedule that cannot be used; `reason` is the condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Five fields, six with seconds first, or an `@daily`-style nickname; the time zone by its
    /// IANA name (None: UTC).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, Invalid> {
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(schedule).map_err(|e| Invalid {
            reason: "InvalidSchedule",
            message: format!("spec.schedule: {schedule:?} is not a cron schedule: {e}"),
        })?;
        let tz = match time_zone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|e| Invalid {
                reason: "InvalidTimeZone",
                message: format!("spec.timeZone: {name:?} is not an IANA time zone: {e}"),
            })?,
        };
        Ok(Schedule { cron, tz })
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron.find_next_occurrence(&t.to_zoned(self.tz.clone()), false).ok().map(|z| z.timestamp())
    }

    /// The last scheduled time at or before `t`.
    pub fn latest_until(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron.find_previous_occurrence(&t.to_zoned(self.tz.clone()), true).ok().map(|z| z.timestamp())
    }
}

/// How a Workflow of the CronWorkflow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Active,
    Succeeded,
    Failed,
}

/// A Workflow the CronWorkflow created, as the controller found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub name: String,
    pub scheduled: Timestamp,
    pub state: RunState,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Create the Workflow for this scheduled time.
    pub create: Option<Timestamp>,
    /// Delete these Workflows: running ones `Replace` displaces, and finished ones beyond the
    /// history limits.
    pub delete: Vec<String>,
    /// A due time that was not run, and why (`Forbidden`: an earlier run is still active;
    /// `MissedDeadline`: later than `startingDeadlineSeconds`).
    pub skipped: Option<(Timestamp, &'static str)>,
    /// The newest scheduled time a Workflow exists (or is now created) for.
    pub last_schedule: Option<Timestamp>,
    /// The next scheduled time (None while suspended).
    pub next_schedule: Option<Timestamp>,
    /// The active runs after this decision, oldest first.
    pub active: Vec<Run>,
}

/// The Workflow name for a scheduled time: deterministic, so creating it twice is impossible.
pub fn run_name(cron: &str, scheduled: Timestamp) -> String {
    format!("{cron}-{}", scheduled.as_second())
}

/// The scheduled time a run name stands for (the reverse of [`run_name`]).
pub fn scheduled_of(cron: &str, name: &str) -> Option<Timestamp> {
    let secs = name.strip_prefix(cron)?.strip_prefix('-')?;
    Timestamp::from_second(secs.parse().ok()?).ok()
}

/// The decision for one pass. `recorded` is `status.lastScheduleTime`; `created` the
/// CronWorkflow's creation time (nothing before it is due). A time counts as done when a
/// Workflow for it or a later one exists or the status records it, so a restart that lost the
/// status doubles nothing, and one that missed a time starts the most recent missed one.
pub fn decide(
    spec: &CronWorkflowSpec,
    schedule: &Schedule,
    created: Timestamp,
    recorded: Option<Timestamp>,
    runs: &[Run],
    now: Timestamp,
) -> Decision {
    let newest_run = runs.iter().map(|r| r.scheduled).max();
    let done_until = [Some(created), recorded, newest_run].into_iter().flatten().max().unwrap_or(created);
    let mut d = Decision {
        last_schedule: [recorded, newest_run].into_iter().flatten().max(),
        next_schedule: (!spec.suspend).then(|| schedule.next_after(now)).flatten(),
        delete: prune(spec, runs),
        ..Default::default()
    };
    let mut active: Vec<Run> = runs.iter().filter(|r| r.state == RunState::Active).cloned().collect();
    active.sort_by_key(|r| r.scheduled);
    let due = schedule.latest_until(now).filter(|t| *t > done_until);
    match due {
        Some(t) if !spec.suspend => start(spec, &mut d, &mut active, t, now),
        _ => {}
    }
    d.active = active;
    d
}

/// A due time: start it, unless it is too late or an active run forbids it.
fn start(spec: &CronWorkflowSpec, d: &mut Decision, active: &mut Vec<Run>, due: Timestamp, now: Timestamp) {
    let late = now.as_second() - due.as_second();
    if spec.starting_deadline_seconds.is_some_and(|limit| late > limit) {
        d.skipped = Some((due, "MissedDeadline"));
        return;
    }
    match spec.concurrency_policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            d.skipped = Some((due, "Forbidden"));
            return;
        }
        ConcurrencyPolicy::Replace => d.delete.extend(active.drain(..).map(|r| r.name)),
        _ => {}
    }
    d.create = Some(due);
    d.last_schedule = Some(due);
    active.push(Run { name: String::new(), scheduled: due, state: RunState::Active });
}

/// Finished runs beyond the history limits, oldest first.
fn prune(spec: &CronWorkflowSpec, runs: &[Run]) -> Vec<String> {
    let keep = |state, limit: Option<i32>, default| {
        let mut done: Vec<&Run> = runs.iter().filter(|r| r.state == state).collect();
        done.sort_by_key(|r| std::cmp::Reverse(r.scheduled));
        let limit = usize::try_from(limit.unwrap_or(default)).unwrap_or(0);
        done.into_iter().skip(limit).map(|r| r.name.clone()).collect::<Vec<_>>()
    };
    let mut gone = keep(RunState::Succeeded, spec.successful_jobs_history_limit, DEFAULT_SUCCESSFUL_HISTORY);
    gone.extend(keep(RunState::Failed, spec.failed_jobs_history_limit, DEFAULT_FAILED_HISTORY));
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(policy: ConcurrencyPolicy) -> CronWorkflowSpec {
        CronWorkflowSpec { schedule: "0 9 1 * *".into(), concurrency_policy: policy, ..Default::default() }
    }

    fn run(name: &str, scheduled: &str, state: RunState) -> Run {
        Run { name: name.into(), scheduled: at(scheduled), state }
    }

    fn monthly() -> Schedule {
        Schedule::parse("0 9 1 * *", None).unwrap()
    }

    #[test]
    fn five_and_six_fields_and_nicknames_parse() {
        let every_20s = Schedule::parse("*/20 * * * * *", None).unwrap();
        assert_eq!(every_20s.next_after(at("2026-01-01T00:00:05Z")), Some(at("2026-01-01T00:00:20Z")));
        assert_eq!(monthly().next_after(at("2026-01-15T00:00:00Z")), Some(at("2026-02-01T09:00:00Z")));
        let daily = Schedule::parse("@daily", None).unwrap();
        assert_eq!(daily.latest_until(at("2026-03-03T10:00:00Z")), Some(at("2026-03-03T00:00:00Z")));
    }

    #[test]
    fn the_time_zone_moves_the_schedule_across_daylight_saving() {
        let berlin = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(berlin.next_after(at("2026-01-10T00:00:00Z")), Some(at("2026-01-10T08:00:00Z")), "CET = UTC+1");
        assert_eq!(berlin.next_after(at("2026-07-10T00:00:00Z")), Some(at("2026-07-10T07:00:00Z")), "CEST = UTC+2");
    }

    #[test]
    fn bad_schedules_and_zones_are_named() {
        let e = Schedule::parse("61 * * * *", None).unwrap_err();
        assert_eq!(e.reason, "InvalidSchedule");
        assert!(e.message.contains("spec.schedule"), "{}", e.message);
        assert_eq!(Schedule::parse("0 * * * *", Some("Mars/Olympus")).unwrap_err().reason, "InvalidTimeZone");
        assert_eq!(Schedule::parse("0 0 1 1 * 2026", None).unwrap_err().reason, "InvalidSchedule", "no year field");
    }

    #[test]
    fn nothing_before_creation_is_due() {
        let d = decide(
            &spec(ConcurrencyPolicy::Allow),
            &monthly(),
            at("2026-03-01T09:30:00Z"),
            None,
            &[],
            at("2026-03-02T00:00:00Z"),
        );
        assert_eq!(d.create, None);
        assert_eq!(d.next_schedule, Some(at("2026-04-01T09:00:00Z")));
    }

    #[test]
    fn a_restart_runs_the_most_recent_missed_time_once() {
        let created = at("2026-01-01T00:00:00Z");
        // Down from before the February run until after the March run: only March starts.
        let d = decide(
            &spec(ConcurrencyPolicy::Allow),
            &monthly(),
            created,
            Some(at("2026-01-01T09:00:00Z")),
            &[],
            at("2026-03-05T00:00:00Z"),
        );
        assert_eq!(d.create, Some(at("2026-03-01T09:00:00Z")));
        // The status write was lost, but the Workflow for March exists: nothing more.
        let runs = [run("r-mar", "2026-03-01T09:00:00Z", RunState::Active)];
        let d = decide(
            &spec(ConcurrencyPolicy::Allow),
            &monthly(),
            created,
            Some(at("2026-01-01T09:00:00Z")),
            &runs,
            at("2026-03-05T00:00:00Z"),
        );
        assert_eq!(d.create, None);
        assert_eq!(d.last_schedule, Some(at("2026-03-01T09:00:00Z")));
    }

    #[test]
    fn a_missed_time_past_the_starting_deadline_is_skipped() {
        let mut s = spec(ConcurrencyPolicy::Allow);
        s.starting_deadline_seconds = Some(3600);
        let created = at("2026-01-01T00:00:00Z");
        let d = decide(&s, &monthly(), created, None, &[], at("2026-03-01T10:00:01Z"));
        assert_eq!((d.create, d.skipped), (None, Some((at("2026-03-01T09:00:00Z"), "MissedDeadline"))));
        let d = decide(&s, &monthly(), created, None, &[], at("2026-03-01T09:59:59Z"));
        assert_eq!(d.create, Some(at("2026-03-01T09:00:00Z")));
    }

    #[test]
    fn concurrency_policies() {
        let created = at("2026-01-01T00:00:00Z");
        let running = [run("r-feb", "2026-02-01T09:00:00Z", RunState::Active)];
        let now = at("2026-03-01T09:00:01Z");
        let allow = decide(&spec(ConcurrencyPolicy::Allow), &monthly(), created, None, &running, now);
        assert_eq!((allow.create.is_some(), allow.delete.len(), allow.active.len()), (true, 0, 2));
        let forbid = decide(&spec(ConcurrencyPolicy::Forbid), &monthly(), created, None, &running, now);
        assert_eq!((forbid.create, forbid.skipped.map(|s| s.1)), (None, Some("Forbidden")));
        let replace = decide(&spec(ConcurrencyPolicy::Replace), &monthly(), created, None, &running, now);
        assert_eq!((replace.create, replace.delete), (Some(at("2026-03-01T09:00:00Z")), vec!["r-feb".to_string()]));
        // Once the run ends, Forbid starts the time it held back.
        let ended = [run("r-feb", "2026-02-01T09:00:00Z", RunState::Succeeded)];
        let later =
            decide(&spec(ConcurrencyPolicy::Forbid), &monthly(), created, None, &ended, at("2026-03-01T09:05:00Z"));
        assert_eq!(later.create, Some(at("2026-03-01T09:00:00Z")));
    }

    #[test]
    fn suspend_starts_nothing_and_shows_no_next_time() {
        let mut s = spec(ConcurrencyPolicy::Allow);
        s.suspend = true;
        let d = decide(&s, &monthly(), at("2026-01-01T00:00:00Z"), None, &[], at("2026-03-01T09:00:01Z"));
        assert_eq!((d.create, d.next_schedule), (None, None));
    }

    #[test]
    fn history_keeps_the_newest_of_each_outcome() {
        let mut s = spec(ConcurrencyPolicy::Allow);
        s.successful_jobs_history_limit = Some(2);
        s.failed_jobs_history_limit = Some(0);
        let runs = [
            run("s1", "2026-01-01T09:00:00Z", RunState::Succeeded),
            run("s3", "2026-03-01T09:00:00Z", RunState::Succeeded),
            run("s2", "2026-02-01T09:00:00Z", RunState::Succeeded),
            run("f1", "2026-02-15T09:00:00Z", RunState::Failed),
            run("a1", "2025-12-01T09:00:00Z", RunState::Active),
        ];
        let d = decide(&s, &monthly(), at("2025-11-01T00:00:00Z"), None, &runs, at("2026-03-02T00:00:00Z"));
        assert_eq!(d.delete, vec!["s1".to_string(), "f1".to_string()]);
    }

    #[test]
    fn run_names_round_trip() {
        let t = at("2026-03-01T09:00:00Z");
        assert_eq!(run_name("review", t), "review-1772355600");
        assert_eq!(scheduled_of("review", &run_name("review", t)), Some(t));
        assert_eq!(scheduled_of("review", "reviewer-1772355600"), None);
    }
}
