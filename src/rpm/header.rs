//! What `inspect` reads from an RPM file: its header's name, epoch, version, release and arch,
//! and the key id of its signature, through the `rpm` crate (and rPGP for the signature
//! packet). Only the lead, the signature header and the header are read, never the payload.
//!
//! Checking the signature is not this module's job: `inspect` says which key signed a
//! package, as `rpm -qi` does; the RPM repositories check signatures against their keys.

use std::io::Read;

use rpm::IndexSignatureTag;

/// The fields of one RPM header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// The signing key's id, 16 lower-case hex digits as `rpm -qi` shows it; `None` when the
    /// package is unsigned.
    pub signing_key: Option<String>,
}

/// The signature tags that hold one OpenPGP signature packet, header-only ones first (what
/// `rpmsign` writes since rpm 4.14), then header+payload ones (older packages).
const SIGNATURE_TAGS: [IndexSignatureTag; 4] = [
    IndexSignatureTag::RPMSIGTAG_RSA,
    IndexSignatureTag::RPMSIGTAG_DSA,
    IndexSignatureTag::RPMSIGTAG_PGP,
    IndexSignatureTag::RPMSIGTAG_GPG,
];

/// Read the header of the RPM whose bytes `input` yields. The error says what is wrong, without
/// the file's name (the caller has it).
pub fn read(input: impl Read) -> Result<Header, String> {
    let mut input = std::io::BufReader::new(input);
    let metadata = rpm::PackageMetadata::parse(&mut input)
        .map_err(|error| format!("not an RPM package: {error}"))?;
    let text = |field: &str, value: Result<&str, rpm::Error>| {
        value
            .map(str::to_owned)
            .map_err(|error| format!("its header has no {field}: {error}"))
    };
    let epoch = match metadata.get_epoch() {
        Ok(epoch) => Some(epoch),
        Err(rpm::Error::TagNotFound(_)) => None,
        Err(error) => return Err(format!("its header's epoch is unreadable: {error}")),
    };
    Ok(Header {
        name: text("name", metadata.get_name())?,
        epoch,
        version: text("version", metadata.get_version())?,
        release: text("release", metadata.get_release())?,
        arch: text("arch", metadata.get_arch())?,
        signing_key: signing_key(&metadata.signature)?,
    })
}

/// The issuer of the first signature packet in the signature header.
fn signing_key(signature: &rpm::Header<IndexSignatureTag>) -> Result<Option<String>, String> {
    let Some(packet) = SIGNATURE_TAGS
        .iter()
        .find_map(|tag| signature.get_entry_data_as_binary(*tag).ok())
    else {
        return Ok(None);
    };
    let signature = pgp::packet::PacketParser::new(std::io::Cursor::new(packet))
        .find_map(|packet| match packet {
            Ok(pgp::packet::Packet::Signature(signature)) => Some(signature),
            _ => None,
        })
        .ok_or_else(|| "its signature header holds no OpenPGP signature".to_owned())?;
    // The issuer subpacket, else the last 8 bytes of the issuer's v4 fingerprint (what the key
    // id is made of); a signature naming neither cannot say who made it.
    if let Some(key_id) = signature.issuer().first() {
        return Ok(Some(key_id.to_string()));
    }
    let from_fingerprint = signature.issuer_fingerprint().first().and_then(|print| {
        let bytes = print.as_bytes();
        (bytes.len() >= 8).then(|| hex::encode(&bytes[bytes.len() - 8..]))
    });
    from_fingerprint
        .map(Some)
        .ok_or_else(|| "its signature names no issuer key".to_owned())
}
