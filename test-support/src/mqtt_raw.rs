//! MQTT packets written by hand, for tests that send what no client library will (a password
//! without the user-name flag, a NUL in a topic, a PUBLISH by topic alias only) or that must
//! control every byte on the wire.

/// An MQTT UTF-8 string: two length bytes, then the bytes (panics past 65535 bytes).
pub fn string(s: &str) -> Vec<u8> {
    let mut v = u16::try_from(s.len())
        .expect("an MQTT string holds at most 65535 bytes")
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// MQTT's variable byte integer (the remaining length): seven bits a byte, low first.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A whole packet: the first byte (type and flags), the remaining length, the body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    p.extend(varint(body.len()));
    p.extend_from_slice(body);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lengths_are_encoded_as_the_spec_table_says() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(127), [0x7F]);
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(16_383), [0xFF, 0x7F]);
        assert_eq!(varint(16_384), [0x80, 0x80, 0x01]);
        assert_eq!(varint(268_435_455), [0xFF, 0xFF, 0xFF, 0x7F]);
    }
}
