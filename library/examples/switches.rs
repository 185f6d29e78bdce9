//! Runtime switches: a kill switch and a sampling percentage per experiment, changed while the
//! service runs (e.g. from an admin endpoint), and `SHADOWDIFF_EXPERIMENTS_DISABLED=a,b` to turn
//! experiments off at start.
use shadowdiff::{settings, Experiment, MemoryPublisher};

fn main() {
    let mem = MemoryPublisher::new();
    let run = |x: u32| {
        Experiment::new("search-ranking")
            .control(|| x * 2)
            .candidate("v2", || x << 1)
            .publisher(mem.clone())
            .run()
    };
    run(1);
    settings("search-ranking").set_percent(0.0); // sample nothing
    run(2);
    settings("search-ranking").set_percent(100.0);
    settings("search-ranking").set_enabled(false); // kill switch
    run(3);
    settings("search-ranking").set_enabled(true);
    run(4);
    println!("{} of 4 calls ran the candidate", mem.runs().len());
}
