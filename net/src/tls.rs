//! TLS for outbound connections (the tap's control, the replayer's targets): rustls with the
//! ring provider, Mozilla's roots (`webpki-roots`, built in, so a container without a system
//! store behaves the same), plus an optional CA file for private CAs and an optional client
//! certificate for servers that require mTLS. Everything is read and checked once, at start.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the TLS material is; every file is PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates trusted besides the built-in roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The client certificate (chain) shown to servers that ask for one (mTLS).
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
}

/// Which of [`TlsFiles`] an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// [`TlsFiles::ca_file`].
    CaFile,
    /// [`TlsFiles::client_cert`].
    ClientCert,
    /// [`TlsFiles::client_key`].
    ClientKey,
}

impl TlsFile {
    /// The setting's name, as in `[tls]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::CaFile => "ca_file",
            Self::ClientCert => "client_cert",
            Self::ClientKey => "client_key",
        }
    }
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Why the TLS files cannot be used; [`TlsError::file`] names the setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// Which setting.
        file: TlsFile,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no PEM section of the kind expected, or a broken one.
    #[error("`{path}` is not PEM with {expected}: {reason}")]
    NotPem {
        /// Which setting.
        file: TlsFile,
        /// The file.
        path: PathBuf,
        /// The section looked for, e.g. `a CERTIFICATE section`.
        expected: &'static str,
        /// The PEM parser's complaint.
        reason: String,
    },
    /// A certificate of `ca_file` cannot be a trust anchor.
    #[error("`{path}`: certificate not usable as a CA: {reason}")]
    BadCa {
        /// Always [`TlsFile::CaFile`].
        file: TlsFile,
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        reason: String,
    },
    /// The private key is not the client certificate's.
    #[error("`{key}` does not match the certificate in `{cert}`")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// Only one of `client_cert` and `client_key` is set.
    #[error(
        "is set without {missing}: a client certificate needs both client_cert and client_key"
    )]
    HalfPair {
        /// The one that is set.
        file: TlsFile,
        /// The one that is not.
        missing: TlsFile,
    },
    /// rustls refused the key or the certificate.
    #[error("`{path}`: {reason}")]
    Rejected {
        /// Which setting.
        file: TlsFile,
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

impl TlsError {
    /// The setting the error is about.
    pub fn file(&self) -> TlsFile {
        match self {
            Self::Read { file, .. }
            | Self::NotPem { file, .. }
            | Self::BadCa { file, .. }
            | Self::HalfPair { file, .. }
            | Self::Rejected { file, .. } => *file,
            Self::KeyMismatch { .. } => TlsFile::ClientKey,
        }
    }
}

/// A checked client TLS configuration. Cheap to clone; the default trusts the built-in roots
/// and has no client certificate.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field(
                "client_certificate",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for ClientTls {
    fn default() -> Self {
        // Nothing read from disk: the only failure left is a provider without safe protocol
        // versions, which ring's is not.
        match build(builtin_roots(), None) {
            Ok(config) => Self { config },
            Err(error) => panic!("the built-in TLS configuration is valid: {error}"),
        }
    }
}

impl ClientTls {
    /// Reads and checks every file: present, PEM, a usable CA, a key that matches its
    /// certificate.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let mut roots = builtin_roots();
        if let Some(path) = &files.ca_file {
            let cas = certificates(TlsFile::CaFile, path)?;
            for ca in cas {
                roots.add(ca).map_err(|e| TlsError::BadCa {
                    file: TlsFile::CaFile,
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        let client = match (&files.client_cert, &files.client_key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsError::HalfPair {
                    file: TlsFile::ClientCert,
                    missing: TlsFile::ClientKey,
                })
            }
            (None, Some(_)) => {
                return Err(TlsError::HalfPair {
                    file: TlsFile::ClientKey,
                    missing: TlsFile::ClientCert,
                })
            }
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        };
        let client = match client {
            Some((cert_path, key_path)) => {
                let chain = certificates(TlsFile::ClientCert, cert_path)?;
                let key = private_key(key_path)?;
                check_key_matches(&chain, &key, cert_path, key_path)?;
                Some((chain, key))
            }
            None => None,
        };
        let config = build(roots, client).map_err(|e| TlsError::Rejected {
            file: TlsFile::ClientKey,
            path: files.client_key.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        Ok(Self { config })
    }

    /// The rustls configuration, for a `tokio_rustls::TlsConnector`.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// Whether a client certificate is configured.
    pub fn has_client_certificate(&self) -> bool {
        self.config.client_auth_cert_resolver.has_certs()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builtin_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

type ClientCertificate = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn build(
    roots: RootCertStore,
    client: Option<ClientCertificate>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    // The pool speaks HTTP/1.1 only: say so, so no server picks h2 for the connection.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file,
        path: path.to_path_buf(),
        source,
    })
}

fn not_pem(file: TlsFile, path: &Path, expected: &'static str, error: pem::Error) -> TlsError {
    let reason = match error {
        pem::Error::NoItemsFound => "no such PEM section found".to_string(),
        other => other.to_string(),
    };
    TlsError::NotPem {
        file,
        path: path.to_path_buf(),
        expected,
        reason,
    }
}

/// Every `CERTIFICATE` section of a PEM file; at least one.
fn certificates(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const EXPECTED: &str = "a CERTIFICATE section";
    let bytes = read(file, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(file, path, EXPECTED, e))?;
    if certs.is_empty() {
        return Err(not_pem(file, path, EXPECTED, pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(TlsFile::ClientKey, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        not_pem(
            TlsFile::ClientKey,
            path,
            "a PRIVATE KEY section (PKCS#8, RSA or EC)",
            e,
        )
    })
}

/// The key must be the certificate's: else every mTLS handshake fails later, far from the
/// cause.
fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TlsError> {
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::Rejected {
            file: TlsFile::ClientKey,
            path: key_path.to_path_buf(),
            reason: format!("not a usable private key: {e}"),
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain.to_vec(), signing);
    match certified.keys_match() {
        Ok(()) => Ok(()),
        // A key type that cannot tell its public key: the handshake will show.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            })
        }
        Err(e) => Err(TlsError::Rejected {
            file: TlsFile::ClientCert,
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// A hint for a TLS failure found in `error`'s source chain, for messages an operator reads.
pub fn hint(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return hint_for(tls);
        }
        // An `io::Error`'s `source` skips the error it wraps, which is where rustls's is.
        if let Some(tls) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return hint_for(tls);
        }
        next = e.source();
    }
    None
}

fn hint_for(error: &rustls::Error) -> Option<&'static str> {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => Some(
            "the server's certificate is not signed by a trusted CA; add its CA to [tls] ca_file (--tls-ca-file)",
        ),
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => Some("the server's certificate is not for the host named in the URL"),
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            Some("the server's certificate has expired")
        }
        rustls::Error::AlertReceived(
            Alert::CertificateRequired | Alert::BadCertificate | Alert::UnknownCA,
        ) => Some(
            "the server refused the client certificate (or got none); set [tls] client_cert and client_key",
        ),
        _ => None,
    }
}
