//! The request/reply convention between the host and agents (docs/ABI.md, "Requests"): an
//! SDK convention carried inside ordinary message payloads, **not part of the ABI**. The
//! runtime routes, records and replays these messages like any other; only the host's
//! `request()` and the SDK's `reply()` read the envelope. Changing it does not change
//! [`ABI_VERSION`](crate::ABI_VERSION).
//!
//! A request is a message from the host whose payload starts with a 16-byte header, the
//! reply a message to the host whose payload starts with one (little-endian):
//!
//! ```text
//!  0  [u8; 4]  magic: "LSRQ" (a request) or "LSRP" (a reply)
//!  4  u32      reserved, 0
//!  8  u64      request id: chosen by the host, unique per runtime; the reply repeats it
//! 16  bytes    body
//! ```
//!
//! The message's `kind` is the caller's (a reply keeps the request's kind), so an agent
//! dispatches on kinds as usual and answers with the SDK's `reply(&msg, body)`.

/// First 4 bytes of a request's payload.
pub const REQUEST_MAGIC: [u8; 4] = *b"LSRQ";
/// First 4 bytes of a reply's payload.
pub const REPLY_MAGIC: [u8; 4] = *b"LSRP";
/// Size of the header before the body.
pub const HEADER_BYTES: usize = 16;
/// Offset of the request id (u64) in the header.
pub const OFFSET_ID: usize = 8;
/// The largest body a request or a reply carries: the message limit less the header.
pub const MAX_BODY_BYTES: usize = crate::MAX_PAYLOAD_BYTES - HEADER_BYTES;

/// What an envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// A request from the host.
    Request,
    /// A reply to the host.
    Reply,
}

impl Envelope {
    /// The magic this envelope starts with.
    pub const fn magic(self) -> [u8; 4] {
        match self {
            Self::Request => REQUEST_MAGIC,
            Self::Reply => REPLY_MAGIC,
        }
    }
}

/// The header of a request or reply carrying request `id` (the body follows it).
pub const fn header(envelope: Envelope, id: u64) -> [u8; HEADER_BYTES] {
    let magic = envelope.magic();
    let id = id.to_le_bytes();
    let mut h = [0u8; HEADER_BYTES];
    let mut i = 0;
    while i < 4 {
        h[i] = magic[i];
        i += 1;
    }
    let mut j = 0;
    while j < 8 {
        h[OFFSET_ID + j] = id[j];
        j += 1;
    }
    h
}

/// Reads an envelope: `Some((what, request id, body))` when `payload` starts with a request or
/// reply header whose reserved field is 0; `None` for any other payload.
pub fn parse(payload: &[u8]) -> Option<(Envelope, u64, &[u8])> {
    if payload.len() < HEADER_BYTES || payload[4..8] != [0, 0, 0, 0] {
        return None;
    }
    let what = if payload[..4] == REQUEST_MAGIC {
        Envelope::Request
    } else if payload[..4] == REPLY_MAGIC {
        Envelope::Reply
    } else {
        return None;
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(&payload[OFFSET_ID..HEADER_BYTES]);
    Some((what, u64::from_le_bytes(id), &payload[HEADER_BYTES..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_other_payloads_are_not_envelopes() {
        let mut p = header(Envelope::Request, 0x0102_0304_0506_0708).to_vec();
        p.extend_from_slice(b"body");
        assert_eq!(parse(&p), Some((Envelope::Request, 0x0102_0304_0506_0708, &b"body"[..])));
        let r = header(Envelope::Reply, 7);
        assert_eq!(parse(&r), Some((Envelope::Reply, 7, &[][..])));
        assert_eq!(&r[..4], b"LSRP");
        assert_eq!(parse(b"LSRQ"), None, "too short");
        let mut reserved = header(Envelope::Reply, 7);
        reserved[5] = 1;
        assert_eq!(parse(&reserved), None, "reserved must be 0");
        assert_eq!(parse(&[0u8; 32]), None);
    }
}
