fn v2(x: u32) -> u32 {
    x
}

fn same(_: &String, _: &String) -> bool {
    true
}

#[shadowdiff::experiment(candidate = v2, compare_errors = same)]
fn f(x: u32) -> u32 {
    x
}

fn main() {
    let _ = f(1);
}
