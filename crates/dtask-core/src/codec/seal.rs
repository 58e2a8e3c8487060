//! Sealed payloads: the messages and saga states of a host with a
//! [`KeyRing`] are encrypted and authenticated with XChaCha20-Poly1305.
//!
//! A sealed payload is an envelope that names the key it was sealed with,
//! so a ring holding the new key first and the old ones after it still
//! opens messages sealed before a rotation:
//!
//! ```text
//! 0x00 'D' 'T' 'S'   magic (no JSON, MessagePack state or Protobuf message starts with 0x00)
//! 0x01               envelope version
//! n, key id          the key's id: one byte of length, then n ASCII bytes
//! nonce              24 random bytes
//! ciphertext, tag    the encoded payload, encrypted; 16 bytes of Poly1305 tag
//! ```
//!
//! The associated data binds the ciphertext to the envelope's header, the
//! task id and the payload's format: a sealed state copied onto another
//! task, or relabelled with another format, does not open.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{self, Aead, Generate, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::Payload;
use crate::error::{Error, Result};
use crate::format::Format;
use crate::id::TaskId;

const MAGIC: [u8; 4] = [0x00, b'D', b'T', b'S'];
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;

/// The keys a host seals and opens payloads with: the first one seals,
/// every one opens what was sealed with it.
///
/// Parsed from `DTASK_ENCRYPTION_KEYS`' format, `id:base64key[,id:base64key]`
/// (each key 32 random bytes, e.g. `openssl rand -base64 32`). Its
/// `Debug` shows the key ids, never the keys, and the keys are wiped from
/// memory when the ring is dropped.
///
/// ```
/// use dtask_core::codec::KeyRing;
/// use dtask_core::{Format, TaskId};
///
/// let old: KeyRing = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".parse()?;
/// let rotated: KeyRing = "k2:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,\
///                         k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".parse()?;
/// let task = TaskId::new();
/// let sealed = old.seal(task, Format::Json, br#"{"secret":1}"#);
/// assert_eq!(KeyRing::sealed_with(&sealed), Some("k1"));
/// // After the rotation, what k1 sealed still opens.
/// assert_eq!(&rotated.open(task, Format::Json, &sealed)?[..], br#"{"secret":1}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    /// Never empty; the first seals.
    keys: Vec<RingKey>,
}

#[derive(Clone)]
struct RingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// Why a key ring could not be made. The messages name key ids and
/// positions, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// No key was given.
    #[error("the key ring is empty: give at least one `id:base64key`")]
    Empty,
    /// An entry is not `id:base64key`.
    #[error("key ring entry {position} is not `id:base64key`")]
    Malformed {
        /// Its position, from 1.
        position: usize,
    },
    /// A key id is empty, too long, or not made of `A-Z a-z 0-9 . _ -`.
    #[error("key ring entry {position}: a key id is 1 to {MAX_KEY_ID_LEN} characters of `A-Z a-z 0-9 . _ -`")]
    BadId {
        /// Its position, from 1.
        position: usize,
    },
    /// Two entries share an id.
    #[error("the key id `{0}` is given twice")]
    DuplicateId(String),
    /// A key is not valid base64.
    #[error("the key `{0}` is not valid base64")]
    NotBase64(String),
    /// A key is not 32 bytes long.
    #[error("the key `{id}` is {len} bytes long; keys are 32 random bytes (256 bits)")]
    WrongLength {
        /// The key's id.
        id: String,
        /// Its length in bytes.
        len: usize,
    },
}

/// Why a payload could not be opened (or was refused unsealed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The payload is sealed, but no key ring was given to this reader.
    #[error("the payload is sealed with key `{0}`, but this host has no key ring (DTASK_ENCRYPTION_KEYS)")]
    NoKeyRing(String),
    /// The payload is sealed with a key the ring does not hold.
    #[error("the payload is sealed with key `{0}`, which this host's key ring does not hold")]
    UnknownKey(String),
    /// Authentication failed: the payload was altered, or sealed for
    /// another task or format.
    #[error("the payload sealed with key `{0}` does not open: it was altered, or sealed for another task or format")]
    Forged(String),
    /// The envelope is cut short or of an unknown version.
    #[error("the sealed payload is malformed: {0}")]
    Malformed(&'static str),
    /// The task requires sealed payloads and this one is not.
    #[error("task `{0}` declares `encrypt_messages`, but the payload is not sealed")]
    NotSealed(&'static str),
}

impl KeyRing {
    /// A ring of `(id, key)` pairs; the first one seals.
    ///
    /// # Errors
    /// [`KeyRingError`] for no key, a bad or repeated id.
    pub fn new<I, S>(keys: I) -> Result<Self, KeyRingError>
    where
        I: IntoIterator<Item = (S, [u8; KEY_LEN])>,
        S: Into<String>,
    {
        let mut ring = Vec::new();
        for (index, (id, key)) in keys.into_iter().enumerate() {
            let key = Zeroizing::new(key);
            ring.push(RingKey::new(index + 1, id.into(), &key, &ring)?);
        }
        if ring.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(Self { keys: ring })
    }

    /// The id of the key that seals.
    pub fn sealing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The ids of every key, the sealing one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| key.id.as_str())
    }

    /// Whether `bytes` are a sealed envelope (by its magic bytes).
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(&MAGIC)
    }

    /// The id of the key a sealed envelope names, `None` when `bytes` are
    /// not a well-formed envelope.
    pub fn sealed_with(bytes: &[u8]) -> Option<&str> {
        Envelope::read(bytes).ok().map(|envelope| envelope.key_id)
    }

    /// Seals `plaintext`, the encoded payload of task `task_id` in `format`,
    /// with the first key of the ring and a fresh random nonce.
    pub fn seal(&self, task_id: TaskId, format: Format, plaintext: &[u8]) -> Bytes {
        let key = &self.keys[0];
        let nonce = XNonce::generate();
        let mut out = BytesMut::with_capacity(header_len(&key.id) + NONCE_LEN + plaintext.len() + TAG_LEN);
        write_header(&mut out, &key.id);
        let aad = associated_data(&out, task_id, format);
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                aead::Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // XChaCha20-Poly1305 fails only past 256 GiB per message.
            .unwrap_or_else(|_| unreachable!("a payload too large to encrypt"));
        out.put_slice(&nonce);
        out.put_slice(&ciphertext);
        out.freeze()
    }

    /// Opens a sealed payload of task `task_id` in `format`.
    ///
    /// # Errors
    /// [`SealError::UnknownKey`] when the ring lacks its key,
    /// [`SealError::Forged`] when it does not authenticate,
    /// [`SealError::Malformed`] when it is no envelope.
    pub fn open(&self, task_id: TaskId, format: Format, sealed: &[u8]) -> Result<Bytes, SealError> {
        let envelope = Envelope::read(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.id == envelope.key_id)
            .ok_or_else(|| SealError::UnknownKey(envelope.key_id.to_owned()))?;
        let aad = associated_data(envelope.header, task_id, format);
        let nonce = XNonce::try_from(envelope.nonce).map_err(|_| SealError::Malformed("a short nonce"))?;
        key.cipher
            .decrypt(
                &nonce,
                aead::Payload {
                    msg: envelope.ciphertext,
                    aad: &aad,
                },
            )
            .map(Bytes::from)
            .map_err(|_| SealError::Forged(envelope.key_id.to_owned()))
    }
}

impl RingKey {
    fn new(position: usize, id: String, key: &[u8; KEY_LEN], before: &[RingKey]) -> Result<Self, KeyRingError> {
        if !valid_id(&id) {
            return Err(KeyRingError::BadId { position });
        }
        if before.iter().any(|key| key.id == id) {
            return Err(KeyRingError::DuplicateId(id));
        }
        let cipher = XChaCha20Poly1305::new(&Key::from(*key));
        Ok(Self { id, cipher })
    }
}

/// 1 to [`MAX_KEY_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_KEY_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl FromStr for KeyRing {
    type Err = KeyRingError;

    /// Parses `id:base64key[,id:base64key...]` (spaces around entries are
    /// ignored; standard base64, padded or not).
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut ring = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let position = index + 1;
            let (id, encoded) = entry.split_once(':').ok_or(KeyRingError::Malformed { position })?;
            let (id, encoded) = (id.trim(), encoded.trim());
            if !valid_id(id) {
                return Err(KeyRingError::BadId { position });
            }
            let decoded = Zeroizing::new(
                STANDARD
                    .decode(encoded)
                    .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
                    .map_err(|_| KeyRingError::NotBase64(id.to_owned()))?,
            );
            let key: Zeroizing<[u8; KEY_LEN]> =
                Zeroizing::new(decoded.as_slice().try_into().map_err(|_| KeyRingError::WrongLength {
                    id: id.to_owned(),
                    len: decoded.len(),
                })?);
            ring.push(RingKey::new(position, id.to_owned(), &key, &ring)?);
        }
        if ring.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(Self { keys: ring })
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `payload` with its envelope opened, for a reader holding `keys`: a
/// sealed payload is opened, an unsealed one passes unless `required_by`
/// names a task that declares `encrypt_messages`.
///
/// # Errors
/// [`Error::Codec`] with a [`SealError`] as its source.
pub(crate) fn unseal(
    payload: &Payload,
    keys: Option<&KeyRing>,
    task_id: TaskId,
    required_by: Option<&'static str>,
) -> Result<Payload> {
    let Payload::Encoded { format, bytes } = payload else {
        // An in-memory hand-off never leaves the process.
        return Ok(payload.clone());
    };
    let format = *format;
    let refused = |error: SealError| Error::Codec {
        format,
        source: error.into(),
    };
    if !KeyRing::is_sealed(bytes) {
        return match required_by {
            Some(task) => Err(refused(SealError::NotSealed(task))),
            None => Ok(payload.clone()),
        };
    }
    let keys = keys.ok_or_else(|| {
        let key_id = KeyRing::sealed_with(bytes).unwrap_or("?");
        refused(SealError::NoKeyRing(key_id.to_owned()))
    })?;
    let bytes = keys.open(task_id, format, bytes).map_err(refused)?;
    Ok(Payload::Encoded { format, bytes })
}

/// The parts of a sealed envelope, borrowed from its bytes.
struct Envelope<'a> {
    /// Magic, version, key id: authenticated as associated data.
    header: &'a [u8],
    key_id: &'a str,
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> Envelope<'a> {
    fn read(bytes: &'a [u8]) -> Result<Self, SealError> {
        let rest = bytes.strip_prefix(&MAGIC).ok_or(SealError::Malformed("no envelope"))?;
        let (&version, rest) = rest.split_first().ok_or(SealError::Malformed("cut short"))?;
        if version != VERSION {
            return Err(SealError::Malformed("an envelope version this build does not read"));
        }
        let (&id_len, rest) = rest.split_first().ok_or(SealError::Malformed("cut short"))?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed("cut short"));
        }
        let (id, rest) = rest.split_at(id_len);
        let key_id = std::str::from_utf8(id).map_err(|_| SealError::Malformed("a key id that is not text"))?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Ok(Self {
            header: &bytes[..header_len(key_id)],
            key_id,
            nonce,
            ciphertext,
        })
    }
}

fn header_len(key_id: &str) -> usize {
    MAGIC.len() + 2 + key_id.len()
}

fn write_header(out: &mut BytesMut, key_id: &str) {
    out.put_slice(&MAGIC);
    out.put_u8(VERSION);
    // Ids are checked to be at most MAX_KEY_ID_LEN (64) ASCII bytes.
    out.put_u8(key_id.len() as u8);
    out.put_slice(key_id.as_bytes());
}

/// The header, then the task id and the format's name, each on its own.
fn associated_data(header: &[u8], task_id: TaskId, format: Format) -> Vec<u8> {
    let task_id = task_id.to_string();
    let mut aad = Vec::with_capacity(header.len() + task_id.len() + 16);
    aad.extend_from_slice(header);
    aad.extend_from_slice(task_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(format.name().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn ring(spec: &str) -> KeyRing {
        spec.parse().expect("a valid ring")
    }

    #[test]
    fn a_sealed_payload_opens_and_hides_its_plaintext() {
        let ring = ring(K1);
        let task = TaskId::new();
        let plaintext = br#"{"account":"MARKER-4242"}"#;
        let sealed = ring.seal(task, Format::Json, plaintext);
        assert!(KeyRing::is_sealed(&sealed));
        assert!(!sealed.windows(11).any(|w| w == b"MARKER-4242"));
        assert_eq!(&ring.open(task, Format::Json, &sealed).unwrap()[..], plaintext);
        // A fresh nonce each time: the same plaintext never seals the same.
        assert_ne!(sealed, ring.seal(task, Format::Json, plaintext));
    }

    #[test]
    fn another_task_or_format_or_a_flipped_bit_does_not_open() {
        let ring = ring(K1);
        let task = TaskId::new();
        let sealed = ring.seal(task, Format::MessagePack, b"state");
        let forged = |result: Result<Bytes, SealError>| matches!(result, Err(SealError::Forged(id)) if id == "k1");
        assert!(forged(ring.open(TaskId::new(), Format::MessagePack, &sealed)));
        assert!(forged(ring.open(task, Format::Json, &sealed)));
        for position in [6, 10, sealed.len() - 20, sealed.len() - 1] {
            let mut altered = sealed.to_vec();
            altered[position] ^= 0x01;
            assert!(
                ring.open(task, Format::MessagePack, &altered).is_err(),
                "bit at {position}"
            );
        }
    }

    #[test]
    fn a_rotated_ring_opens_what_the_old_key_sealed_and_seals_with_the_new() {
        let old = ring(K1);
        let rotated = ring(&format!("{K2},{K1}"));
        let task = TaskId::new();
        let sealed = old.seal(task, Format::Protobuf, b"in flight");
        assert_eq!(
            &rotated.open(task, Format::Protobuf, &sealed).unwrap()[..],
            b"in flight"
        );
        let resealed = rotated.seal(task, Format::Protobuf, b"in flight");
        assert_eq!(KeyRing::sealed_with(&resealed), Some("k2"));
        assert_eq!(
            old.open(task, Format::Protobuf, &resealed),
            Err(SealError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn a_cut_or_foreign_envelope_is_malformed() {
        let ring = ring(K1);
        let task = TaskId::new();
        let sealed = ring.seal(task, Format::Json, b"x");
        for len in [0, 3, 5, 6, 8, 8 + NONCE_LEN] {
            assert!(
                matches!(
                    ring.open(task, Format::Json, &sealed[..len]),
                    Err(SealError::Malformed(_))
                ),
                "cut at {len}"
            );
        }
        assert!(!KeyRing::is_sealed(br#"{"schemaVersion":1}"#));
        assert!(matches!(
            ring.open(task, Format::Json, b"{}"),
            Err(SealError::Malformed("no envelope"))
        ));
        let mut future = sealed.to_vec();
        future[4] = 2;
        assert!(matches!(
            ring.open(task, Format::Json, &future),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn bad_rings_are_refused_without_showing_a_key() {
        let cases = [
            ("", KeyRingError::Empty),
            (" , ", KeyRingError::Empty),
            ("k1", KeyRingError::Malformed { position: 1 }),
            (":AAAA", KeyRingError::BadId { position: 1 }),
            ("k 1:AAAA", KeyRingError::BadId { position: 1 }),
            ("k1:not base64!", KeyRingError::NotBase64("k1".into())),
            (
                "k1:AAAA",
                KeyRingError::WrongLength {
                    id: "k1".into(),
                    len: 3,
                },
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(spec.parse::<KeyRing>().unwrap_err(), expected, "{spec:?}");
        }
        let twice = format!("{K1},{K1}");
        assert_eq!(
            twice.parse::<KeyRing>().unwrap_err(),
            KeyRingError::DuplicateId("k1".into())
        );
        let ring = ring(&format!("{K2}, {K1}"));
        assert_eq!(ring.sealing_key_id(), "k2");
        let debug = format!("{ring:?}");
        assert!(debug.contains("k2") && debug.contains("k1"), "{debug}");
        assert!(!debug.contains("ICEi") && !debug.contains("AAEC"), "{debug}");
    }
}
