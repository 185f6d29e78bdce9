//! `[tls]` files are checked at start, each error naming what is wrong.
#![allow(clippy::unwrap_used)]

use shadowdiff_net::testing::{write, TestCa};
use shadowdiff_net::tls::{ClientTls, TlsError, TlsFile, TlsFiles};

fn load(files: TlsFiles) -> Result<ClientTls, TlsError> {
    ClientTls::load(&files)
}

#[test]
fn good_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("files CA");
    let client = ca.client();
    let tls = load(TlsFiles {
        ca_file: Some(write(dir.path(), "ca.pem", &ca.cert_pem())),
        client_cert: Some(write(dir.path(), "c.pem", &client.cert_pem)),
        client_key: Some(write(dir.path(), "c.key", &client.key_pem)),
    })
    .unwrap();
    assert!(tls.has_client_certificate());
    assert!(!ClientTls::default().has_client_certificate());
}

#[test]
fn a_missing_file_is_named() {
    let error = load(TlsFiles {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..TlsFiles::default()
    })
    .unwrap_err();
    assert_eq!(error.file(), TlsFile::CaFile);
    let text = error.to_string();
    assert!(
        text.contains("/nonexistent/ca.pem") && text.contains("No such file"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_pem_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(dir.path(), "ca.der", "not a certificate at all");
    let error = load(TlsFiles {
        ca_file: Some(junk),
        ..TlsFiles::default()
    })
    .unwrap_err();
    assert_eq!(error.file(), TlsFile::CaFile);
    assert!(
        error
            .to_string()
            .contains("is not PEM with a CERTIFICATE section"),
        "{error}"
    );

    // A key where the certificate belongs, and a certificate where the key belongs.
    let ca = TestCa::new("files CA");
    let client = ca.client();
    let error = load(TlsFiles {
        client_cert: Some(write(dir.path(), "k1.pem", &client.key_pem)),
        client_key: Some(write(dir.path(), "k2.pem", &client.key_pem)),
        ..TlsFiles::default()
    })
    .unwrap_err();
    assert_eq!(error.file(), TlsFile::ClientCert, "{error}");
    let error = load(TlsFiles {
        client_cert: Some(write(dir.path(), "c1.pem", &client.cert_pem)),
        client_key: Some(write(dir.path(), "c2.pem", &client.cert_pem)),
        ..TlsFiles::default()
    })
    .unwrap_err();
    assert_eq!(error.file(), TlsFile::ClientKey, "{error}");
    assert!(error.to_string().contains("PRIVATE KEY"), "{error}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("files CA");
    let (one, other) = (ca.client(), ca.client());
    let error = load(TlsFiles {
        client_cert: Some(write(dir.path(), "one.pem", &one.cert_pem)),
        client_key: Some(write(dir.path(), "other.key", &other.key_pem)),
        ..TlsFiles::default()
    })
    .unwrap_err();
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    assert_eq!(error.file(), TlsFile::ClientKey);
    assert!(
        error.to_string().contains("does not match the certificate"),
        "{error}"
    );
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("files CA");
    let error = load(TlsFiles {
        client_cert: Some(write(dir.path(), "c.pem", &ca.client().cert_pem)),
        ..TlsFiles::default()
    })
    .unwrap_err();
    assert_eq!(error.file(), TlsFile::ClientCert);
    assert!(error.to_string().contains("client_key"), "{error}");
}
