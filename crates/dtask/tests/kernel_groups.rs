//! Parallel groups (fan-in and race) and conditions.

mod support;

use dtask::testing::TestHost;
use dtask::{StepStatus, TaskStatus};
use support::{FetchFastest, FetchRequest, Journal, Transcode, VideoRequest};

#[tokio::test]
async fn group_members_run_concurrently_and_the_saga_waits_for_all() {
    let journal = Journal::default();
    let host = TestHost::new(Transcode::new(journal.clone()));
    let outcome = host
        .run::<Transcode>(VideoRequest {
            height: 2160,
            fail_1080: false,
        })
        .await
        .unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed, "{:?}", outcome.progress.error);
    let mut renditions = outcome.response.unwrap().renditions;
    renditions.sort();
    assert_eq!(renditions, ["1080", "2160", "720"]);
    let entries = journal.entries();
    assert_eq!(entries.first().map(String::as_str), Some("run Probe"));
    assert_eq!(
        entries.last().map(String::as_str),
        Some("run Publish"),
        "Publish waits for every member"
    );
    let held = outcome.progress.steps[3].condition.as_ref().unwrap();
    assert!(held.holds);
    assert_eq!(held.observed[0].path, "probe.height");
    assert_eq!(held.observed[0].value, "2160");
}

#[tokio::test]
async fn a_false_condition_skips_the_step_and_records_what_it_saw() {
    let journal = Journal::default();
    let host = TestHost::new(Transcode::new(journal.clone()));
    let handle = host
        .submit::<Transcode>(VideoRequest {
            height: 1080,
            fail_1080: false,
        })
        .await
        .unwrap();
    let outcome = handle.wait().await.unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(journal.count("run 2160"), 0);
    let uhd = &outcome.progress.steps[3];
    assert_eq!(uhd.name, "Transcode2160");
    assert_eq!(uhd.status, StepStatus::Skipped);
    let condition = uhd.condition.as_ref().unwrap();
    assert_eq!(condition.expression, "probe.height > 1080");
    assert!(!condition.holds);
    assert_eq!(condition.observed[0].value, "1080");
    assert_eq!(outcome.progress.completed_steps, 5, "a skipped step counts as done");
    assert!(
        host.timeline(handle.id())
            .contains(&"StepSkipped Transcode2160".to_owned())
    );
}

#[tokio::test]
async fn a_failed_member_compensates_only_the_completed_members() {
    let journal = Journal::default();
    let host = TestHost::new(Transcode::new(journal.clone()));
    let outcome = host
        .run::<Transcode>(VideoRequest {
            height: 1080,
            fail_1080: true,
        })
        .await
        .unwrap();

    assert_eq!(outcome.status(), TaskStatus::Compensated);
    assert_eq!(journal.count("undo 720"), 1, "the completed sibling is undone");
    assert_eq!(journal.count("undo 1080"), 0, "the failed member is not");
    assert_eq!(journal.count("undo 2160"), 0, "the skipped member is never undone");
    assert_eq!(journal.count("run Publish"), 0);
    let statuses: Vec<_> = outcome.progress.steps.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Completed,
            StepStatus::Compensated,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Pending
        ]
    );
}

#[tokio::test]
async fn in_a_race_the_first_member_wins_and_the_others_are_cancelled() {
    let journal = Journal::default();
    let host = TestHost::new(FetchFastest {
        journal: journal.clone(),
    });
    let outcome = host
        .run::<FetchFastest>(FetchRequest { path: "/iso".into() })
        .await
        .unwrap();

    assert_eq!(outcome.status(), TaskStatus::Completed);
    assert_eq!(outcome.response.as_deref(), Some("a:/iso"));
    assert_eq!(journal.count("MirrorB saw its token fire"), 1);
    assert_eq!(outcome.progress.steps[0].status, StepStatus::Completed);
    assert_eq!(outcome.progress.steps[1].status, StepStatus::Cancelled);
}
