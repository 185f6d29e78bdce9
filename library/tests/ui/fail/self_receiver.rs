struct S;

fn v2(_s: &S) -> u32 {
    1
}

impl S {
    #[shadowdiff::experiment(candidate = v2)]
    fn get(&self) -> u32 {
        1
    }
}

fn main() {}
