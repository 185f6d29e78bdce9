use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A captured body: at most the capture limit of bytes, plus what the full body was.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Body {
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub bytes: Bytes,
    /// True when `bytes` holds only the first part of the body.
    pub truncated: bool,
    /// Length of the whole body as it crossed the wire.
    pub full_len: u64,
    /// FNV-1a 64 of the captured bytes; equal hashes let the differ skip equal bodies.
    pub hash: u64,
}

impl Body {
    /// A complete (not truncated) body.
    pub fn complete(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            full_len: bytes.len() as u64,
            hash: fnv1a64(&bytes),
            bytes,
            truncated: false,
        }
    }

    /// A body of which only `bytes` (the prefix) was kept out of `full_len`.
    pub fn partial(bytes: impl Into<Bytes>, full_len: u64, truncated: bool) -> Self {
        let bytes = bytes.into();
        Self {
            hash: fnv1a64(&bytes),
            bytes,
            truncated,
            full_len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.full_len == 0
    }
}

/// FNV-1a, 64 bit: stable across builds and platforms (unlike `DefaultHasher`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn to_base64<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map(Bytes::from)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_through_json() {
        let body = Body::partial(&b"\x00\xffabc"[..], 10, true);
        let json = serde_json::to_string(&body).unwrap();
        let back: Body = serde_json::from_str(&json).unwrap();
        assert_eq!(body, back);
    }
}
