//! An in-process `#[experiment]`-style run reaches ClickHouse through `ClickHousePublisher`
//! (feature `clickhouse`), and `shadowdiff report --clickhouse`, the gate and the dashboard
//! queries show it beside HTTP endpoints. Needs `SHADOWDIFF_TEST_CLICKHOUSE`.
#![allow(clippy::unwrap_used)]

use serde::Serialize;
use shadowdiff::{ClickHousePublisher, Experiment, Publisher};
use std::process::Command;
use std::sync::Arc;

#[derive(Serialize)]
struct Price {
    cents: u64,
    currency: &'static str,
}

#[test]
fn experiment_runs_published_to_clickhouse_show_in_the_report_and_the_dashboards() {
    let url = std::env::var("SHADOWDIFF_TEST_CLICKHOUSE").unwrap_or_else(|_| {
        panic!("SHADOWDIFF_TEST_CLICKHOUSE is not set: scripts/services.sh start && source .services/env")
    });
    let database = format!("sd_lib_{}", uuid::Uuid::new_v4().simple());
    let publisher = Arc::new(ClickHousePublisher::new(&url, &database, 1024).unwrap());
    let experiment = format!("pricing-{}", uuid::Uuid::new_v4().simple());
    // 'static names: leak one string per test run.
    let name: &'static str = Box::leak(experiment.clone().into_boxed_str());
    for qty in 0..30u64 {
        let price = Experiment::new(name)
            .control(|| Price {
                cents: qty * 250,
                currency: "EUR",
            })
            // Every third quantity is priced one cent higher by the candidate.
            .candidate("v2", || Price {
                cents: qty * 250 + u64::from(qty % 3 == 0),
                currency: "EUR",
            })
            .publisher(publisher.clone() as Arc<dyn Publisher>)
            .run();
        assert_eq!(price.cents, qty * 250, "the control's value comes back");
    }
    assert_eq!(publisher.dropped(), 0);
    // Dropping the last handle flushes the queue and joins the writer.
    drop(publisher);

    let out = Command::new(env!("CARGO_BIN_EXE_shadowdiff"))
        .args(["report", "--clickhouse", &url, "--database", &database])
        .args(["--experiment", &experiment, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &report["endpoints"][0];
    assert_eq!(
        (e["method"].as_str(), e["route"].as_str()),
        (Some("FN"), Some(name))
    );
    assert_eq!(
        (e["compared"].as_u64(), e["mismatched"].as_u64()),
        (Some(30), Some(10))
    );
    assert_eq!(e["fields"][0]["path"], "result.cents");

    // The dashboard query shows the same numbers.
    let sql = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/clickhouse/queries/candidates_side_by_side.sql"),
    )
    .unwrap()
    .replace(
        "shadowdiff.diff_records",
        &format!("{database}.diff_records"),
    )
    .replace("{experiment:String}", &format!("'{experiment}'"))
    .replace("{since:DateTime}", "toDateTime(0)")
    .replace("{until:DateTime}", "toDateTime(4102444800)");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--data-binary"])
        .arg(format!("{sql}\nFORMAT JSONEachRow"))
        .arg(&url)
        .output()
        .unwrap();
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(row["endpoint"], format!("FN {experiment}"));
    assert_eq!(
        (row["compared"].as_str(), row["mismatched"].as_str()),
        (Some("30"), Some("10"))
    );
}
