//! The WebSocket opening handshake's one computation (RFC 6455 §4.2.2): the `Sec-WebSocket-Accept` a
//! backend must answer a client's `Sec-WebSocket-Key` with. A 101 carrying anything else is not a
//! WebSocket the client asked for, and the engine answers 502 instead of starting a tunnel.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha1::{Digest as _, Sha1};

/// The GUID RFC 6455 appends to the key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Length of an accept value: base64 of a 20-byte SHA-1.
pub const ACCEPT_LEN: usize = 28;

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes (24 characters).
#[must_use]
pub fn is_valid_key(key: &[u8]) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut raw).is_ok_and(|n| n == 16)
}

/// `base64(SHA-1(key ‖ GUID))`.
#[must_use]
pub fn accept(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    let mut out = [0u8; ACCEPT_LEN];
    // 20 bytes always encode to 28 characters
    let _ = STANDARD.encode_slice(digest, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_6455_example_key_gives_its_accept() {
        assert_eq!(&accept(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_ne!(&accept(b"dGhlIHNhbXBsZSBub25jZR=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn keys_are_sixteen_bytes_of_base64() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="), "23 characters must be refused");
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ!="), "a non-base64 byte must be refused");
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZXNz"), "18 bytes must be refused");
        assert!(!is_valid_key(b""));
    }
}
