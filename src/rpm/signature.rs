//! RPM header signatures, checked in-process with the `rpm` crate (rPGP underneath).
//!
//! A package passes when its digests match and one of the repository's keys verifies its
//! header signature, as `rpmkeys --checksig` with those keys imported would say.

use std::path::Path;

/// Why a package's signature does not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read the key: {0}")]
    Key(String),
    #[error("cannot read the package: {0}")]
    Package(String),
    #[error("{0}")]
    Invalid(String),
}

/// Parsed repository keys, ready to verify packages with.
pub struct Keyring {
    verifiers: Vec<rpm::signature::pgp::Verifier>,
}

impl Keyring {
    /// Read ASCII-armoured public keys.
    pub fn new(keys: &[Vec<u8>]) -> Result<Self, SignatureError> {
        let verifiers = keys
            .iter()
            .map(|key| {
                rpm::signature::pgp::Verifier::load_from_asc_bytes(key)
                    .map_err(|error| SignatureError::Key(error.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { verifiers })
    }

    /// Check the RPM at `path`: digests, then the header signature with any of the keys.
    pub fn verify(&self, path: &Path) -> Result<(), SignatureError> {
        let package =
            rpm::Package::open(path).map_err(|error| SignatureError::Package(error.to_string()))?;
        let mut last = SignatureError::Invalid("no key to check it with".into());
        for verifier in &self.verifiers {
            match package.verify_signature(verifier.clone()) {
                Ok(()) => return Ok(()),
                Err(error) => last = SignatureError::Invalid(error.to_string()),
            }
        }
        Err(last)
    }
}
