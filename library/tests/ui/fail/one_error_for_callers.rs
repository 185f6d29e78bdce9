fn v2(x: u32) -> u32 {
    x
}

// A wrong argument is one error; the callers of `f` still compile.
#[shadowdiff::experiment(candidate = v2, percnt = 5)]
fn f(x: u32) -> u32 {
    x
}

fn main() {
    let _ = f(1);
    let _ = f(2);
}
