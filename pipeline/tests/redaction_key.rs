//! The redaction key from `SHADOWDIFF_REDACTION_KEY`, in a process of its own (the variable is
//! process-wide): the stages that run as separate processes require a shared key, and the key
//! from the variable gives the known answer.

use shadowdiff_pipeline::config::Config;

#[test]
fn separate_processes_need_a_shared_key_and_the_variable_gives_the_known_answer() {
    std::env::remove_var("SHADOWDIFF_REDACTION_KEY");
    let config = Config::default();
    let e = config.shared_redaction_key().unwrap_err().to_string();
    assert!(
        e.starts_with("capture.redaction.key")
            && e.contains("SHADOWDIFF_REDACTION_KEY")
            && e.contains("same secret"),
        "{e}"
    );
    // In the file: accepted.
    let mut with_key = Config::default();
    with_key.capture.redaction.key = Some("shadowdiff-known-answer".into());
    assert!(with_key.shared_redaction_key().is_ok());
    let from_file = with_key.common().unwrap().redactor;

    // In the variable: accepted, and it is the key used (the known answer of
    // model/src/redact.rs, computed with Python's hmac).
    std::env::set_var("SHADOWDIFF_REDACTION_KEY", "shadowdiff-known-answer");
    assert!(config.shared_redaction_key().is_ok());
    let from_env = config.common().unwrap().redactor;
    for redactor in [&from_env, &from_file] {
        assert_eq!(
            redactor.hash(b"Bearer secret-token-123"),
            "redacted:5fc983c3539f8b80"
        );
    }
    std::env::remove_var("SHADOWDIFF_REDACTION_KEY");
}
