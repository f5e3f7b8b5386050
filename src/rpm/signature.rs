//! OpenPGP checks of a repository: RPM header signatures and `repomd.xml.asc`, in-process
//! with the `rpm` crate and rPGP (`pgp`) underneath.
//!
//! A package passes when its digests match and one of the repository's keys verifies its
//! header signature, as `rpmkeys --checksig` with those keys imported would say. The key that
//! verified it is named by its fingerprint (40 lower-case hex digits for a v4 key), which the
//! lock file pins, so a `--locked` build accepts only that key.
//!
//! `isobuild lock` does not download packages: it reads each one's lead, signature header and
//! header (the first few KiB, one HTTP `Range` request) and checks the header-only signature
//! on those bytes ([`Keyring::verify_header`]), which is what says which key signed it.

use std::path::Path;

use pgp::composed::{Deserializable as _, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails as _;
use rpm::IndexSignatureTag;

use super::fast_rsa::{FastKey, RsaKey};

/// Why a signature does not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read the key: {0}")]
    Key(String),
    #[error("cannot read the package: {0}")]
    Package(String),
    #[error("{0}")]
    Invalid(String),
}

/// One repository key.
struct Key {
    fingerprint: String,
    public: SignedPublicKey,
    verifier: rpm::signature::pgp::Verifier,
    /// AWS-LC's copy of the primary key, then of each subkey, where it is RSA.
    rsa: Vec<Option<RsaKey>>,
}

/// Parsed repository keys, ready to verify packages and metadata with.
pub struct Keyring {
    keys: Vec<Key>,
}

/// The lead's fixed size, and the size of a header's intro (magic, reserved, count, size).
const LEAD: usize = 96;
const INTRO: usize = 16;

impl Keyring {
    /// Read ASCII-armoured public keys.
    pub fn new(keys: &[Vec<u8>]) -> Result<Self, SignatureError> {
        let keys = keys
            .iter()
            .map(|key| {
                let text = std::str::from_utf8(key)
                    .map_err(|error| SignatureError::Key(error.to_string()))?;
                let (public, _) = SignedPublicKey::from_string(text)
                    .map_err(|error| SignatureError::Key(error.to_string()))?;
                let verifier = rpm::signature::pgp::Verifier::load_from_asc_bytes(key)
                    .map_err(|error| SignatureError::Key(error.to_string()))?;
                let rsa = std::iter::once(RsaKey::new(&public))
                    .chain(public.public_subkeys.iter().map(RsaKey::new))
                    .collect();
                Ok(Key {
                    fingerprint: format!("{:x}", public.fingerprint()),
                    public,
                    verifier,
                    rsa,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// The fingerprint of each key, in order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|key| key.fingerprint.clone())
            .collect()
    }

    /// Check the RPM at `path`: its header-only signature with `pinned` (a fingerprint) or,
    /// without a pin, any of the keys, the header's sha256 and the payload's sha256 the signed
    /// header declares, which together authenticate every byte after the lead. A package
    /// without a payload digest (rpm before 4.14) is checked the older way, by the `rpm`
    /// crate (every digest and signature in its signature header). Returns the fingerprint
    /// of the key that verified it.
    pub fn verify(&self, path: &Path, pinned: Option<&str>) -> Result<String, SignatureError> {
        let bytes =
            fs_err::read(path).map_err(|error| SignatureError::Package(error.to_string()))?;
        self.verify_bytes(&bytes, pinned)
    }

    /// [`Keyring::verify`] of an RPM's bytes.
    pub fn verify_bytes(
        &self,
        bytes: &[u8],
        pinned: Option<&str>,
    ) -> Result<String, SignatureError> {
        let (fingerprint, metadata, end) = self.check_header(bytes, pinned)?;
        let algorithm = metadata
            .header
            .get_entry_data_as_u32_array(rpm::IndexTag::RPMTAG_PAYLOADDIGESTALGO)
            .ok()
            .and_then(|values| values.first().copied());
        let declared = metadata
            .header
            .get_entry_data_as_string_array(rpm::IndexTag::RPMTAG_PAYLOADSHA256)
            .ok()
            .and_then(|values| values.first().cloned());
        // 8 is SHA-256 in rpm's PGPHASHALGO numbering (the default when the tag is absent).
        if let Some(declared) = declared
            && algorithm.is_none_or(|algorithm| algorithm == 8)
        {
            use sha2::Digest as _;
            if hex::encode(sha2::Sha256::digest(&bytes[end..])) != declared {
                return Err(SignatureError::Invalid(
                    "its payload does not match the sha256 digest its header declares".into(),
                ));
            }
            return Ok(fingerprint);
        }
        let package = rpm::Package::parse(&mut std::io::Cursor::new(bytes))
            .map_err(|error| SignatureError::Package(error.to_string()))?;
        let mut last = SignatureError::Invalid("no key to check it with".into());
        for key in self.candidates(pinned) {
            match package.verify_signature(key.verifier.clone()) {
                Ok(()) => return Ok(key.fingerprint.clone()),
                Err(error) => last = SignatureError::Invalid(error.to_string()),
            }
        }
        Err(last)
    }

    /// Where an RPM's header starts and ends (after its lead and padded signature header),
    /// given at least its first [`Keyring::HEADER_PROBE`] bytes (or the whole file); `None`
    /// when `bytes` is too short to say.
    pub fn header_range(bytes: &[u8]) -> Result<Option<(usize, usize)>, SignatureError> {
        let section = |start: usize| -> Result<Option<usize>, SignatureError> {
            let Some(intro) = bytes.get(start..start + INTRO) else {
                return Ok(None);
            };
            if intro[..3] != [0x8e, 0xad, 0xe8] {
                return Err(SignatureError::Package(format!(
                    "no header magic at byte {start}: not an RPM package"
                )));
            }
            let count = u32::from_be_bytes([intro[8], intro[9], intro[10], intro[11]]) as usize;
            let size = u32::from_be_bytes([intro[12], intro[13], intro[14], intro[15]]) as usize;
            Ok(Some(start + INTRO + count * 16 + size))
        };
        if bytes.len() >= 4 && bytes[..4] != [0xed, 0xab, 0xee, 0xdb] {
            return Err(SignatureError::Package(
                "no RPM lead: not an RPM package".into(),
            ));
        }
        let Some(signature_end) = section(LEAD)? else {
            return Ok(None);
        };
        // The signature header is padded to a multiple of 8 bytes.
        let header_start = signature_end.next_multiple_of(8);
        Ok(section(header_start)?.map(|end| (header_start, end)))
    }

    /// How many bytes to fetch first when reading a package's header with `Range`.
    pub const HEADER_PROBE: usize = 64 << 10;

    /// Check the header-only signature of the RPM whose first bytes (at least to the end of
    /// [`Keyring::header_range`]) are `bytes`, with any of the keys; returns the fingerprint
    /// of the key that verified it. The header's sha256 in the signature header is checked
    /// too.
    pub fn verify_header(&self, bytes: &[u8]) -> Result<String, SignatureError> {
        self.check_header(bytes, None)
            .map(|(fingerprint, _, _)| fingerprint)
    }

    /// [`Keyring::verify_header`] with `pinned` (or any key): the fingerprint, the parsed
    /// headers, and where the header ends (the payload starts).
    fn check_header(
        &self,
        bytes: &[u8],
        pinned: Option<&str>,
    ) -> Result<(String, rpm::PackageMetadata, usize), SignatureError> {
        let (header_start, end) = Self::header_range(bytes)?
            .filter(|(_, end)| *end <= bytes.len())
            .ok_or_else(|| SignatureError::Package("its header is cut short".into()))?;
        let mut reader = std::io::Cursor::new(&bytes[..end]);
        let metadata = rpm::PackageMetadata::parse(&mut reader)
            .map_err(|error| SignatureError::Package(error.to_string()))?;
        let header = &bytes[header_start..end];
        if let Ok(declared) = metadata
            .signature
            .get_entry_data_as_string(IndexSignatureTag::RPMSIGTAG_SHA256)
        {
            use sha2::Digest as _;
            if hex::encode(sha2::Sha256::digest(header)) != declared {
                return Err(SignatureError::Invalid(
                    "its header does not match its sha256 digest".into(),
                ));
            }
        }
        let packet = [
            IndexSignatureTag::RPMSIGTAG_RSA,
            IndexSignatureTag::RPMSIGTAG_DSA,
        ]
        .iter()
        .find_map(|tag| metadata.signature.get_entry_data_as_binary(*tag).ok())
        .ok_or_else(|| SignatureError::Invalid("it has no header signature".into()))?;
        let signature = pgp::packet::PacketParser::new(std::io::Cursor::new(packet))
            .find_map(|packet| match packet {
                Ok(pgp::packet::Packet::Signature(signature)) => Some(signature),
                _ => None,
            })
            .ok_or_else(|| {
                SignatureError::Invalid("its signature header holds no OpenPGP signature".into())
            })?;
        let fingerprint = self.first_verifying(&signature, header, pinned)?;
        Ok((fingerprint, metadata, end))
    }

    /// Check a detached ASCII-armoured signature (`repomd.xml.asc`) of `data` with any of the
    /// keys; returns the fingerprint of the key that verified it.
    pub fn verify_detached(&self, data: &[u8], asc: &[u8]) -> Result<String, SignatureError> {
        let text = std::str::from_utf8(asc)
            .map_err(|_| SignatureError::Invalid("the signature is not ASCII-armoured".into()))?;
        let (signature, _) = DetachedSignature::from_string(text)
            .map_err(|error| SignatureError::Invalid(format!("unreadable signature: {error}")))?;
        self.first_verifying(&signature.signature, data, None)
    }

    /// The fingerprint of the first key (`pinned`, or any) whose primary key or a subkey
    /// verifies `signature` over `data`.
    fn first_verifying(
        &self,
        signature: &pgp::packet::Signature,
        data: &[u8],
        pinned: Option<&str>,
    ) -> Result<String, SignatureError> {
        let mut last = match pinned {
            Some(pin) => format!("the repository has no key {pin}"),
            None => "no key to check it with".to_owned(),
        };
        for key in self.candidates(pinned) {
            let fast = |index: usize| key.rsa.get(index).and_then(Option::as_ref);
            let primary = signature.verify(
                &FastKey {
                    key: &key.public,
                    rsa: fast(0),
                },
                data,
            );
            // Subkeys are tried only while nothing verified (a lazy chain).
            let subkeys = key
                .public
                .public_subkeys
                .iter()
                .enumerate()
                .map(|(index, subkey)| {
                    let subkey = FastKey {
                        key: subkey,
                        rsa: fast(index + 1),
                    };
                    signature.verify(&subkey, data)
                });
            for check in std::iter::once(primary).chain(subkeys) {
                match check {
                    Ok(()) => return Ok(key.fingerprint.clone()),
                    Err(error) => last = error.to_string(),
                }
            }
        }
        Err(SignatureError::Invalid(last))
    }

    fn candidates<'a>(&'a self, pinned: Option<&'a str>) -> impl Iterator<Item = &'a Key> {
        self.keys
            .iter()
            .filter(move |key| pinned.is_none_or(|pin| key.fingerprint == pin))
    }
}
