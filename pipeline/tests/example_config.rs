//! The example config in the repository root stays valid.

#[test]
fn example_config_parses_and_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shadowdiff.example.toml");
    let config = shadowdiff_pipeline::config::Config::from_file(&path).expect("example parses");
    let settings = config.validate().expect("example validates");
    assert_eq!(settings.common.experiment, "checkout-v2");
    assert_eq!(settings.replay.targets.len(), 1);
}
