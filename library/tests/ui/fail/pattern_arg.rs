fn v2(p: (u32, u32)) -> u32 {
    p.0
}

#[shadowdiff::experiment(candidate = v2)]
fn first((a, _b): (u32, u32)) -> u32 {
    a
}

fn main() {}
