struct Price(u64);

fn v2(x: u64) -> Price {
    Price(x)
}

#[shadowdiff::experiment(candidate = v2)]
fn price(x: u64) -> Price {
    Price(x)
}

fn main() {
    let _ = price(1);
}
