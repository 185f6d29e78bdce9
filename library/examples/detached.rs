//! Detached mode: the caller gets the control's value as soon as the control is done; the
//! candidate finishes in the background and is compared there. Beyond the in-flight bound a run
//! is shed (only the control runs) and counted.
use shadowdiff::{settings, Experiment, MemoryPublisher};
use std::time::Duration;

#[tokio::main]
async fn main() {
    let mem = MemoryPublisher::new();
    settings("render-detached").set_max_in_flight(100);
    let page = Experiment::new("render-detached")
        .control_async(async { "<h1>Hello</h1>".to_string() })
        .candidate("v2", || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "<h1>Hello</h1>".to_string()
        })
        .publisher(mem.clone())
        .run_detached()
        .await;
    println!("returned at once: {page}");
    // The comparison lands a little later.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "candidate: {}",
        mem.runs()[0].candidates[0].outcome.as_str()
    );
}
