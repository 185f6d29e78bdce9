fn candidate(a: u32, b: String) -> usize {
    a as usize + b.len()
}

#[shadowdiff::experiment(candidate = candidate, percent = 5)]
fn control(a: u32, b: String) -> usize {
    b.len() + a as usize
}

fn main() {
    assert_eq!(control(1, "ab".into()), 3);
}
