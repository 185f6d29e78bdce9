#[shadowdiff::experiment(percent = 1.0)]
fn f(x: u32) -> u32 {
    x
}

fn main() {}
