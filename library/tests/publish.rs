//! Publishers: `RecordPublisher` hands diff records to its sink off the caller's path and
//! counts what it drops; `MetricsPublisher` counts runs, mismatches and errors.
use shadowdiff::{Experiment, RecordPublisher};
use shadowdiff_model::{Outcome, TargetRole};
use std::sync::{Arc, Mutex};

#[test]
fn record_publisher_hands_diff_records_to_the_sink_off_the_caller_path() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let publisher = Arc::new(RecordPublisher::new(16, move |batch| {
        sink.lock().expect("lock").extend(batch);
    }));
    let out: Result<u32, String> = Experiment::new("records")
        .try_control(|| Ok(1))
        .candidate("v2", || Ok(2))
        .candidate("v3", || Ok(1))
        .candidate("v4", || Err("down".into()))
        .context("tenant", "acme")
        .publisher(publisher.clone())
        .run();
    assert_eq!(out, Ok(1));
    // Dropping the last handle flushes the queue and joins the thread.
    drop(publisher);
    let mut records = got.lock().expect("lock").clone();
    records.sort_by(|a, b| a.target.cmp(&b.target));
    assert_eq!(records.len(), 3);
    let r = &records[0];
    assert_eq!(
        (r.experiment.as_str(), r.method.as_str(), r.route.as_str()),
        ("records", "FN", "records")
    );
    assert_eq!(r.target, "v2");
    assert_eq!(r.role, TargetRole::Candidate);
    assert_eq!(r.outcome, Outcome::Mismatch);
    assert_eq!(r.differences[0].path, "result");
    assert_eq!(r.fingerprint, shadowdiff_model::fingerprint(&r.differences));
    assert_ne!(r.fingerprint, 0);
    assert!(r.control_latency_us.is_some() && r.target_latency_us.is_some());
    assert_eq!(
        uuid::Uuid::parse_str(&r.exchange_id)
            .expect("uuid")
            .get_version_num(),
        7
    );
    assert_eq!(r.notes, vec!["context tenant=acme".to_string()]);
    assert_eq!(records[1].outcome, Outcome::Match);
    assert_eq!(records[1].fingerprint, 0);
    assert_eq!(records[2].outcome, Outcome::Error);
    assert_eq!(records[2].detail.as_deref(), Some("error: \"down\""));
}

#[test]
fn record_publisher_drops_and_counts_when_full() {
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (entered_tx, entered_rx) = crossbeam_channel::unbounded::<()>();
    let publisher = Arc::new(RecordPublisher::new(1, move |_| {
        // Hold the thread so that the queue fills up.
        let _ = entered_tx.send(());
        let _ = release_rx.recv();
    }));
    let run = || {
        Experiment::new("records-full")
            .control(|| 1)
            .candidate("v2", || 2)
            .publisher(publisher.clone())
            .run();
    };
    // The first record reaches the sink, which holds the thread, before the others are sent:
    // sent while the thread was still gathering its batch, they could all join that batch
    // (a fast enough caller refills the one-record queue between the thread's takes).
    run();
    let entered = entered_rx.recv_timeout(std::time::Duration::from_secs(10));
    for _ in 0..9 {
        run();
    }
    let dropped = publisher.dropped();
    // Let the sink go before asserting: a failed assertion would otherwise drop the publisher
    // first, whose drop joins a thread still held in the sink (a hang instead of a failure).
    drop(release_tx);
    assert!(entered.is_ok(), "the sink never received the first record");
    // Accepted at most: the record the sink holds and one waiting in the queue (capacity 1).
    assert!(dropped >= 7, "{dropped}");
}

#[test]
fn metrics_publisher_counts_by_experiment() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        Experiment::new("metrics")
            .try_control(|| Ok::<u8, String>(1))
            .candidate("v2", || Ok(2))
            .candidate("v3", || Err("x".into()))
            .publisher(Arc::new(shadowdiff::MetricsPublisher))
            .run()
            .expect("control ok");
    });
    let counters: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_string(), n)),
            _ => None,
        })
        .collect();
    for name in [
        "shadowdiff_experiment_runs_total",
        "shadowdiff_experiment_mismatches_total",
        "shadowdiff_experiment_candidate_errors_total",
    ] {
        assert!(
            counters.contains(&(name.to_string(), 1)),
            "{name}: {counters:?}"
        );
    }
}
