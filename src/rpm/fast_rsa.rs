//! The RSA step of an OpenPGP signature check, done by AWS-LC instead of rPGP's pure-Rust
//! bignums: rPGP's `num-bigint-dig` spends about 250 µs on one RSA-2048 verification (it
//! walks all 64 bits of the exponent in windows), AWS-LC about 20 µs, and every RPM of a
//! repository is one verification.
//!
//! rPGP still does everything else: it parses the signature, hashes the data with the
//! signature's trailer, checks the hash's first two bytes, the issuer and the hash's strength,
//! and hands this module the digest ([`FastKey`] implements its key trait). Only a valid
//! PKCS#1 v1.5 signature over that digest is accepted here; anything else (another
//! algorithm, a hash AWS-LC has no parameters for, a key size outside its range, a signature
//! that does not verify) goes to rPGP's own check, whose verdict and error message stand.

use aws_lc_rs::signature::{self as lc, ParsedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::public_key::PublicKeyAlgorithm;
use pgp::types::{
    Fingerprint, KeyDetails, KeyId, KeyVersion, PublicKeyTrait, PublicParams, SignatureBytes,
};

/// An RSA public key parsed by AWS-LC, once per digest algorithm it can check.
#[derive(Debug)]
pub(super) struct RsaKey {
    /// The modulus' length in bytes: OpenPGP drops a signature's leading zero bytes, AWS-LC
    /// wants them back.
    size: usize,
    parsed: Vec<(
        HashAlgorithm,
        &'static aws_lc_rs::digest::Algorithm,
        ParsedPublicKey,
    )>,
}

impl RsaKey {
    /// AWS-LC's view of `key`, or `None` when it is not an RSA key AWS-LC takes (then rPGP
    /// checks its signatures alone).
    pub(super) fn new(key: &impl PublicKeyTrait) -> Option<Self> {
        let PublicParams::RSA(params) = key.public_params() else {
            return None;
        };
        Self::from_rsa(&params.key)
    }

    fn from_rsa(key: &rsa::RsaPublicKey) -> Option<Self> {
        let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(key).ok()?;
        let parsed: Vec<_> = ALGORITHMS
            .iter()
            .filter_map(|&(hash, digest, algorithm)| {
                ParsedPublicKey::new(algorithm, der.as_bytes())
                    .ok()
                    .map(|parsed| (hash, digest, parsed))
            })
            .collect();
        let size = rsa::traits::PublicKeyParts::size(key);
        (!parsed.is_empty()).then_some(Self { size, parsed })
    }

    /// Whether `signature` is a valid PKCS#1 v1.5 signature of the `hashed` digest.
    fn verifies(&self, hash: HashAlgorithm, hashed: &[u8], signature: &SignatureBytes) -> bool {
        let Some((_, digest, parsed)) = self.parsed.iter().find(|(known, ..)| *known == hash)
        else {
            return false;
        };
        let Ok(mpis) = <&[pgp::types::Mpi]>::try_from(signature) else {
            return false;
        };
        let [mpi] = mpis else {
            return false;
        };
        let bytes = mpi.as_ref();
        if bytes.len() > self.size {
            return false;
        }
        let mut padded = vec![0; self.size];
        padded[self.size - bytes.len()..].copy_from_slice(bytes);
        aws_lc_rs::digest::Digest::import_less_safe(hashed, digest)
            .is_ok_and(|digest| parsed.verify_digest_sig(&digest, &padded).is_ok())
    }
}

/// The OpenPGP hashes AWS-LC checks, with its digest and the widest key-size range it has
/// for each: rPGP sets no lower bound, and a key outside these falls back to it.
const ALGORITHMS: [(
    HashAlgorithm,
    &aws_lc_rs::digest::Algorithm,
    &lc::RsaParameters,
); 4] = [
    (
        HashAlgorithm::Sha256,
        &aws_lc_rs::digest::SHA256,
        &lc::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
    ),
    (
        HashAlgorithm::Sha512,
        &aws_lc_rs::digest::SHA512,
        &lc::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
    ),
    (
        HashAlgorithm::Sha384,
        &aws_lc_rs::digest::SHA384,
        &lc::RSA_PKCS1_2048_8192_SHA384,
    ),
    (
        HashAlgorithm::Sha1,
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &lc::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
    ),
];

/// A key of the keyring as rPGP's signature check sees it: itself, but with the RSA step
/// done by AWS-LC when it can be.
#[derive(Debug)]
pub(super) struct FastKey<'k, K> {
    pub(super) key: &'k K,
    pub(super) rsa: Option<&'k RsaKey>,
}

impl<K: KeyDetails> KeyDetails for FastKey<'_, K> {
    fn version(&self) -> KeyVersion {
        self.key.version()
    }

    fn fingerprint(&self) -> Fingerprint {
        self.key.fingerprint()
    }

    fn key_id(&self) -> KeyId {
        self.key.key_id()
    }

    fn algorithm(&self) -> PublicKeyAlgorithm {
        self.key.algorithm()
    }
}

impl<K: PublicKeyTrait> PublicKeyTrait for FastKey<'_, K> {
    fn created_at(&self) -> &chrono::DateTime<chrono::Utc> {
        self.key.created_at()
    }

    fn expiration(&self) -> Option<u16> {
        self.key.expiration()
    }

    fn verify_signature(
        &self,
        hash: HashAlgorithm,
        hashed: &[u8],
        signature: &SignatureBytes,
    ) -> pgp::errors::Result<()> {
        if self
            .rsa
            .is_some_and(|rsa| rsa.verifies(hash, hashed, signature))
        {
            return Ok(());
        }
        self.key.verify_signature(hash, hashed, signature)
    }

    fn public_params(&self) -> &PublicParams {
        self.key.public_params()
    }
}

#[cfg(test)]
mod tests {
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::types::{Mpi, SignatureBytes};

    use super::RsaKey;

    /// An RSA-2048 key (e = 65537) and its PKCS#1 v1.5 signature of a SHA-512 digest, made
    /// once with `openssl genrsa` and `openssl pkeyutl -sign -pkeyopt digest:sha512`.
    const MODULUS: &str = concat!(
        "bf9ae52eaf6d10626a85d2a7984a5e3e4eec17bbf39c6129dc293e45a6b885a3",
        "24036323bd17c913b04805a5a1c51583682d644c54af31433dde17eb6b7390e1",
        "c4e826ee654fc473586fb820097da268f25bf7645d7629ddaff8394db3e6bbec",
        "ffafc9a2408e57f97a53ecef07be153a3b21845690ac007f349fe65bee1c889c",
        "4a5b64e2259f890b5c7b4106e80c818e877e27fb76c32034014b398d4ce91608",
        "1346b54f167328f07be9668f7bcb40945fc6ececd4dc7169098cd1e539287e51",
        "cc8c830013cb8d323cefe89920493dca263e72cc0d4c9308ed2bea9e9998df35",
        "c4b92a66b19e2995282935e93b5458dd271bcb2c0cf66205b950f5798eee78e9"
    );
    const DIGEST: &str = concat!(
        "e3fa534549d1dfdf172f4ad5811966abb0f187be2eb6df03bd09c098982f750f",
        "f22d9e01bac7e81a21fce707cd6d6f1a38efdfc409c3f94450750179f5d258b6"
    );
    const SIGNATURE: &str = concat!(
        "6c7b7e3112f978bef0bf43430f1b05f2b6de8789dfee4151ce800d6654d4467f",
        "c8b47d9794eb3508439795fe992c448ce443f3f384429f11d9dad4d64d5c2c89",
        "218b11a99e63cad733ac27e9b8a51cf2bd7c2817b85d940accf73afa4b489bf6",
        "4c04a815df41623287659e60b55ea202ee39f878a6500e6111e08c6f077c219c",
        "10045ce1980fe382714d3bca8385266513ea3593e57d77b3c1a837154540e920",
        "9cc36226fed850a3374066c2f6078cf01649a5afb9d889e339b76501ff3f4e0c",
        "15f5372d91158a039a81110915d4746820adb11a34fd8e306fab55d13436c0a0",
        "0fd84a6d9972e7a68e4c32395e2a55e0694c849240196f999e661a4ae1807b5d"
    );

    fn key() -> RsaKey {
        let n = rsa::BigUint::from_bytes_be(&hex::decode(MODULUS).unwrap());
        let public = rsa::RsaPublicKey::new(n, rsa::BigUint::from(65_537_u32)).unwrap();
        RsaKey::from_rsa(&public).expect("AWS-LC takes an RSA-2048 key")
    }

    fn signature(bytes: &[u8]) -> SignatureBytes {
        SignatureBytes::Mpis(vec![Mpi::from_slice(bytes)])
    }

    #[test]
    fn a_valid_signature_verifies_without_rpgp() {
        let digest = hex::decode(DIGEST).unwrap();
        let sig = hex::decode(SIGNATURE).unwrap();
        assert!(key().verifies(HashAlgorithm::Sha512, &digest, &signature(&sig)));
    }

    #[test]
    fn another_digest_or_hash_or_a_bad_signature_does_not() {
        let key = key();
        let digest = hex::decode(DIGEST).unwrap();
        let sig = hex::decode(SIGNATURE).unwrap();
        let mut other = digest.clone();
        other[0] ^= 1;
        assert!(!key.verifies(HashAlgorithm::Sha512, &other, &signature(&sig)));
        // The same bytes said to be another hash: the PKCS#1 prefix differs.
        assert!(!key.verifies(HashAlgorithm::Sha256, &digest[..32], &signature(&sig)));
        // No AWS-LC parameters for SHA-224: rPGP decides.
        assert!(!key.verifies(HashAlgorithm::Sha224, &digest[..28], &signature(&sig)));
        let mut bad = sig.clone();
        bad[100] ^= 1;
        assert!(!key.verifies(HashAlgorithm::Sha512, &digest, &signature(&bad)));
        assert!(!key.verifies(
            HashAlgorithm::Sha512,
            &digest,
            &signature(&[sig.clone(), vec![0]].concat())
        ));
    }
}
