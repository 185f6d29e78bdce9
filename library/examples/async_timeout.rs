//! An async experiment whose slow candidate is cancelled after its timeout.
use shadowdiff::{Experiment, MemoryPublisher};
use std::time::Duration;

#[tokio::main]
async fn main() {
    let mem = MemoryPublisher::new();
    let user = Experiment::new("user-lookup")
        .control_async(async { "ada".to_string() })
        .candidate("slow-v2", || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "ada".to_string()
        })
        .timeout(Duration::from_millis(50))
        .publisher(mem.clone())
        .run()
        .await;
    let run = &mem.runs()[0];
    println!(
        "returned {user}; candidate {}",
        run.candidates[0].outcome.as_str()
    );
}
