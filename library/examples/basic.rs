//! A sync experiment: the control's value is returned; the candidate's difference is published.
use serde::Serialize;
use shadowdiff::{Experiment, MemoryPublisher};

#[derive(Serialize)]
struct Price {
    cents: u64,
    currency: &'static str,
}

fn old_price(qty: u64) -> Price {
    Price {
        cents: qty * 250,
        currency: "EUR",
    }
}

fn new_price(qty: u64) -> Price {
    Price {
        cents: qty * 250 + 1,
        currency: "EUR",
    }
}

fn main() {
    let mem = MemoryPublisher::new();
    let qty = 4;
    let price = Experiment::new("pricing-v2")
        .control(|| old_price(qty))
        .candidate("v2", || new_price(qty))
        .publisher(mem.clone())
        .run();
    println!("returned {} cents", price.cents);
    for d in &mem.runs()[0].candidates[0].differences {
        println!(
            "{} {}: {:?} -> {:?}",
            d.path,
            d.kind.as_str(),
            d.control,
            d.candidate
        );
    }
}
