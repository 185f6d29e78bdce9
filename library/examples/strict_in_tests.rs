//! Making mismatches fail tests, three ways: `run_strict()` returns them as an `Err`;
//! `RaiseOnMismatches::on()` makes every failing run on this thread panic with the differences
//! (Scientist's `raise_on_mismatches`; `set_raise_on_mismatches(true)` or
//! `SHADOWDIFF_RAISE_ON_MISMATCHES=1` for the whole process); `strict` in the attribute does it
//! for one experiment.
use shadowdiff::{Experiment, RaiseOnMismatches};

fn total_v1(items: &[u32]) -> u32 {
    items.iter().sum()
}

fn total_v2(items: &[u32]) -> u32 {
    items.iter().sum::<u32>() + u32::from(items.len() > 2)
}

fn main() {
    let items = [1, 2, 3];
    match Experiment::new("total-strict")
        .control(|| total_v1(&items))
        .candidate("v2", || total_v2(&items))
        .run_strict()
    {
        Ok(v) => println!("agreed on {v}"),
        Err(mismatch) => println!("{mismatch}"),
    }

    let _raise = RaiseOnMismatches::on();
    let caught = std::panic::catch_unwind(|| {
        Experiment::new("total-raise")
            .control(|| total_v1(&items))
            .candidate("v2", || total_v2(&items))
            .context("items", items.len())
            .run()
    });
    if let Err(panic) = caught {
        println!(
            "raised: {}",
            panic.downcast_ref::<String>().map_or("?", |s| s.as_str())
        );
    }
}
