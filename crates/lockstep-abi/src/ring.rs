//! Layout of the single-producer/single-consumer rings in shared memory between JS (`ring.js`,
//! over a `SharedArrayBuffer`) and the engine, version 1 (docs/RINGS.md), little-endian:
//!
//! ```text
//!   0  u32 magic "LSRG"   4 u32 version (1)   8 u32 capacity (data bytes, power of two)
//!  64  u32 head: bytes ever written (producer-owned, own cache line)
//! 128  u32 tail: bytes ever read (consumer-owned, own cache line)
//! 192  data[capacity]
//! record (8-byte aligned): u32 payload_len | u16 type | u16 flags | u32 kind | i32 priority
//!                          | u64 agent | payload | padding to 8
//! ```
//!
//! A record never wraps: when it does not fit before the end of the data area, the producer
//! writes a [`TYPE_PAD`] record (its `payload_len` is the bytes to the end) that fills it.

/// The ring header's magic number: `"LSRG"` read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"LSRG");
/// The ring layout version.
pub const VERSION: u32 = 1;
/// Bytes before the data area (the header, with `head` and `tail` on cache lines of their own).
pub const HEADER_BYTES: usize = 192;
/// Header field, u32: [`MAGIC`].
pub const OFFSET_MAGIC: usize = 0;
/// Header field, u32: [`VERSION`].
pub const OFFSET_VERSION: usize = 4;
/// Header field, u32: the data area's size in bytes, a power of two.
pub const OFFSET_CAPACITY: usize = 8;
/// Header field, u32: bytes ever written, wrapping (producer-owned, accessed atomically).
pub const OFFSET_HEAD: usize = 64;
/// Header field, u32: bytes ever read, wrapping (consumer-owned, accessed atomically).
pub const OFFSET_TAIL: usize = 128;

/// Smallest data area accepted, bytes.
pub const MIN_CAPACITY: usize = 1 << 12;
/// Largest data area accepted, bytes.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Size of a record header; the payload follows it.
pub const RECORD_HEADER_BYTES: usize = 24;
/// Records start at, and are padded to, multiples of this many bytes.
pub const RECORD_ALIGN: usize = 8;
/// Record field, u32: the payload length (for [`TYPE_PAD`]: the record's whole length).
pub const RECORD_OFFSET_PAYLOAD_LEN: usize = 0;
/// Record field, u16: the record type (`TYPE_*`).
pub const RECORD_OFFSET_TYPE: usize = 4;
/// Record field, u16: flags, 0.
pub const RECORD_OFFSET_FLAGS: usize = 6;
/// Record field, u32: the message kind.
pub const RECORD_OFFSET_KIND: usize = 8;
/// Record field, i32: the message priority.
pub const RECORD_OFFSET_PRIORITY: usize = 12;
/// Record field, u64: the recipient (inbound messages) or the sender (outbound ones).
pub const RECORD_OFFSET_AGENT: usize = 16;

/// Record type: a message.
pub const TYPE_MESSAGE: u16 = 1;
/// Record type: an event (payload: JSON).
pub const TYPE_EVENT: u16 = 2;
/// Record type: a tick (payload: u64 tick, 32-byte hash).
pub const TYPE_TICK: u16 = 3;
/// Record type: padding to the end of the data area (only `payload_len` and the type are
/// written: a padding record may be as short as 8 bytes).
pub const TYPE_PAD: u16 = 0xFFFF;

/// Bytes of a record holding `payload_len` payload bytes, header and padding included.
#[inline]
pub const fn record_bytes(payload_len: usize) -> usize {
    (RECORD_HEADER_BYTES + payload_len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

const _: () = {
    assert!(RECORD_ALIGN.is_power_of_two());
    assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
    assert!(HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
    assert!(MIN_CAPACITY.is_power_of_two() && MAX_CAPACITY.is_power_of_two());
    // The counters are u32 and free-running: used = head - tail must be unambiguous.
    assert!(MAX_CAPACITY <= 1 << 31);
    assert!(OFFSET_CAPACITY + 4 <= OFFSET_HEAD && OFFSET_HEAD + 4 <= OFFSET_TAIL && OFFSET_TAIL + 4 <= HEADER_BYTES);
};
