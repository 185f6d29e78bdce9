fn v2(x: u32) -> String {
    x.to_string()
}

#[shadowdiff::experiment(candidate = v2)]
fn f(x: u32) -> u32 {
    x
}

fn main() {}
