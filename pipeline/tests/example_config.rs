//! The example config in the repository root stays valid.

#[test]
fn example_config_parses_and_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shadowdiff.example.toml");
    let config = shadowdiff_pipeline::config::Config::from_file(&path).expect("example parses");
    let settings = config.validate().expect("example validates");
    assert_eq!(settings.common.experiment, "checkout-v2");
    assert_eq!(settings.replay.targets.len(), 1);
}

/// The example spells out the defaults of these sections; they must not drift from the code's.
#[test]
fn example_config_shows_the_real_defaults() {
    use shadowdiff_pipeline::config::Config;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shadowdiff.example.toml");
    let example = Config::from_file(&path).expect("example parses");
    let defaults = Config::default();
    assert_eq!(example.kafka, defaults.kafka);
    assert_eq!(example.clickhouse, defaults.clickhouse);
    assert_eq!(example.pipeline, defaults.pipeline);
    assert_eq!(example.admin, defaults.admin);
}
