//! Digests used across layers: SHA-256 (tokens, fingerprints) and FNV-1a (cheap,
//! stable hashes of bytes: sampling, file fingerprints).

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The first 16 bytes of the SHA-256 of `text`, as 32 hex digits: the fingerprint
/// length the decoders and sluice's own alerts share.
pub(crate) fn fingerprint_hex(text: &str) -> String {
    use std::fmt::Write;
    sha256(text.as_bytes())[..16]
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// 64-bit FNV-1a of `bytes` (stable across runs and platforms).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fingerprint_hex("abc"), "ba7816bf8f01cfea414140de5dae2223");
    }
}
