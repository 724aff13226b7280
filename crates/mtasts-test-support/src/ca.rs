//! A throw-away certificate authority for tests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority generated at test time (ECDSA P-256, via rcgen).
///
/// Give [`TestCa::cert_der`] or the PEM file written by [`TestCa::write_pem`] to the client
/// as an extra root; issue leaf certificates with [`TestCa::issue`].
///
/// Cloning is cheap and yields a handle to the same CA.
#[derive(Clone)]
pub struct TestCa {
    issuer: Arc<CertifiedIssuer<'static, KeyPair>>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// Generates a new CA ("mtasts test CA").
    ///
    /// # Panics
    ///
    /// Panics if key generation fails (test support only).
    pub fn new() -> Self {
        Self::with_name("mtasts test CA")
    }

    /// Generates a new CA with the given common name.
    ///
    /// # Panics
    ///
    /// Panics if key generation fails (test support only).
    pub fn with_name(common_name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        Self {
            issuer: Arc::new(issuer),
        }
    }

    /// The CA certificate, PEM encoded.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER encoded.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate as PEM to `path`.
    ///
    /// # Panics
    ///
    /// Panics if the file cannot be written (test support only).
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.pem()).expect("write CA PEM file");
    }

    /// Issues a leaf certificate for the DNS names `names`.
    ///
    /// # Panics
    ///
    /// Panics if a name is not a valid SAN or signing fails (test support only).
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid SAN names");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &**self.issuer).expect("sign leaf");
        IssuedCert {
            chain: vec![cert.der().clone()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A leaf certificate and its private key, issued by a [`TestCa`].
#[derive(Clone)]
pub struct IssuedCert {
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes the certificate and its key as PEM files `<dir>/<name>.crt` and `<dir>/<name>.key` (the key
    /// readable by its owner only), for servers that read files (redis-server, PostgreSQL); returns their paths.
    pub fn write_pem_files(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate PEM file");
        std::fs::write(&key, &self.key_pem).expect("write key PEM file");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        (cert, key)
    }

    /// The certificate chain (leaf first), DER encoded.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key, PKCS#8 DER encoded.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// A rustls [`CertifiedKey`] (ring signer) for serving this certificate.
    ///
    /// # Panics
    ///
    /// Panics if the key is not supported by ring (cannot happen for keys from [`TestCa`]).
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        let signer =
            rustls::crypto::ring::sign::any_supported_type(&self.key_der()).expect("ring key");
        Arc::new(CertifiedKey::new(self.chain.clone(), signer))
    }
}
