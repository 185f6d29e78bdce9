//! Its own test binary: the variable is read once, at the registry's first use.

#[test]
fn env_disables_listed_experiments_at_first_use() {
    std::env::set_var(shadowdiff::DISABLED_ENV, "env-off, other");
    assert!(!shadowdiff::settings("env-off").is_enabled());
    assert!(shadowdiff::settings("env-on").is_enabled());
    let out = shadowdiff::Experiment::new("env-off")
        .control(|| 1)
        .candidate("v2", || -> i32 { unreachable!("disabled by env") })
        .run();
    assert_eq!(out, 1);
    // The kill switch can turn it back on while the process runs.
    shadowdiff::settings("env-off").set_enabled(true);
    assert!(shadowdiff::settings("env-off").is_enabled());
}
