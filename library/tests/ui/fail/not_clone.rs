struct NotClone(u32);

fn v2(x: NotClone) -> u32 {
    x.0
}

#[shadowdiff::experiment(candidate = v2)]
fn f(x: NotClone) -> u32 {
    x.0
}

fn main() {}
