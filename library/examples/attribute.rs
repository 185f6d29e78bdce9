//! `#[shadowdiff::experiment]`: the body is the control, `candidate` gets clones of the arguments.
use std::sync::Arc;

fn tokenize_v2(text: String) -> Vec<String> {
    text.split_whitespace().map(str::to_lowercase).collect()
}

#[shadowdiff::experiment(candidate = tokenize_v2, percent = 100.0)]
fn tokenize(text: String) -> Vec<String> {
    text.split(' ').map(str::to_string).collect()
}

fn main() {
    let mem = shadowdiff::MemoryPublisher::new();
    shadowdiff::set_default_publisher(mem.clone() as Arc<dyn shadowdiff::Publisher>);
    println!("{:?}", tokenize("Hello  World".to_string()));
    // Turned off at run time, without a redeploy:
    shadowdiff::settings("tokenize").set_enabled(false);
    tokenize("no candidate now".to_string());
    println!("published runs: {}", mem.runs().len());
}
