//! Tensor element types of the `infer` import's samples and answers (docs/ABI.md,
//! "Inference"; docs/INFERENCE.md has the full table with the JS representation of each).
//!
//! The ids are ONNX's own `TensorProto.DataType` numbers. An agent's sample holds, for each
//! model input in order, that input's per-sample elements in the wire encoding of its type; an
//! answer holds each output's per-sample elements alike:
//!
//! - fixed-width types (8, 16, 32, 64 bits): the elements little-endian, back to back (`bool`:
//!   one byte, 0 or 1; `float16`, `bfloat16` and the float8 kinds: their raw bits);
//! - sub-byte types (4 and 2 bits): packed as ONNX Runtime packs them, `8 / bits` elements per
//!   byte, the first element in the lowest bits; each sample starts on a byte boundary, so it
//!   takes `ceil(count × bits / 8)` bytes;
//! - `string`: each element as a u32 byte length ([`STRING_LENGTH_BYTES`]) then that many bytes
//!   of UTF-8 (no NUL), back to back.
//!
//! Complex numbers (ids 14 and 15) have no kernels in ONNX Runtime and are not carried.

/// `float` (32-bit IEEE 754).
pub const FLOAT32: u32 = 1;
/// `uint8`.
pub const UINT8: u32 = 2;
/// `int8`.
pub const INT8: u32 = 3;
/// `uint16`.
pub const UINT16: u32 = 4;
/// `int16`.
pub const INT16: u32 = 5;
/// `int32`.
pub const INT32: u32 = 6;
/// `int64`.
pub const INT64: u32 = 7;
/// `string`: UTF-8, variable length.
pub const STRING: u32 = 8;
/// `bool`: one byte, 0 or 1.
pub const BOOL: u32 = 9;
/// `float16` (IEEE 754 half): raw bits.
pub const FLOAT16: u32 = 10;
/// `double` (64-bit IEEE 754).
pub const FLOAT64: u32 = 11;
/// `uint32`.
pub const UINT32: u32 = 12;
/// `uint64`.
pub const UINT64: u32 = 13;
/// `bfloat16`: raw bits.
pub const BFLOAT16: u32 = 16;
/// `float8e4m3fn`: raw bits.
pub const FLOAT8E4M3FN: u32 = 17;
/// `float8e4m3fnuz`: raw bits.
pub const FLOAT8E4M3FNUZ: u32 = 18;
/// `float8e5m2`: raw bits.
pub const FLOAT8E5M2: u32 = 19;
/// `float8e5m2fnuz`: raw bits.
pub const FLOAT8E5M2FNUZ: u32 = 20;
/// `uint4`: packed, two per byte.
pub const UINT4: u32 = 21;
/// `int4`: packed, two per byte (two's complement nibbles).
pub const INT4: u32 = 22;
/// `float4e2m1`: packed, two per byte.
pub const FLOAT4E2M1: u32 = 23;
/// `float8e8m0`: raw bits.
pub const FLOAT8E8M0: u32 = 24;
/// `uint2`: packed, four per byte.
pub const UINT2: u32 = 25;
/// `int2`: packed, four per byte (two's complement).
pub const INT2: u32 = 26;

/// Every id carried, in id order.
pub const ALL: [u32; 24] = [
    FLOAT32,
    UINT8,
    INT8,
    UINT16,
    INT16,
    INT32,
    INT64,
    STRING,
    BOOL,
    FLOAT16,
    FLOAT64,
    UINT32,
    UINT64,
    BFLOAT16,
    FLOAT8E4M3FN,
    FLOAT8E4M3FNUZ,
    FLOAT8E5M2,
    FLOAT8E5M2FNUZ,
    UINT4,
    INT4,
    FLOAT4E2M1,
    FLOAT8E8M0,
    UINT2,
    INT2,
];

/// Size of the length before each element of a string tensor (u32, little-endian).
pub const STRING_LENGTH_BYTES: usize = 4;

/// Bits per element of type `id` on the wire: 64, 32, 16, 8, 4 or 2; 0 for [`STRING`]
/// (variable); `None` for an id not carried.
pub const fn bits(id: u32) -> Option<u32> {
    Some(match id {
        INT64 | UINT64 | FLOAT64 => 64,
        FLOAT32 | INT32 | UINT32 => 32,
        UINT16 | INT16 | FLOAT16 | BFLOAT16 => 16,
        UINT8 | INT8 | BOOL | FLOAT8E4M3FN | FLOAT8E4M3FNUZ | FLOAT8E5M2 | FLOAT8E5M2FNUZ | FLOAT8E8M0 => 8,
        UINT4 | INT4 | FLOAT4E2M1 => 4,
        UINT2 | INT2 => 2,
        STRING => 0,
        _ => return None,
    })
}

/// Bytes that `count` elements of fixed-width type `id` take (sub-byte types packed, rounded up
/// to a whole byte); `None` for [`STRING`], an id not carried, or an overflow.
pub const fn packed_bytes(id: u32, count: usize) -> Option<usize> {
    match bits(id) {
        Some(0) | None => None,
        Some(b) => match count.checked_mul(b as usize) {
            Some(total) => Some(total.div_ceil(8)),
            None => None,
        },
    }
}

/// The first element of string data `bytes` and the rest: `(element, rest)`, where `element`
/// is the element's UTF-8 bytes (not checked here); `None` when `bytes` is too short.
pub fn split_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_at_checked(STRING_LENGTH_BYTES)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    rest.split_at_checked(len)
}

/// The length header of a string element of `len` bytes.
pub const fn string_header(len: u32) -> [u8; STRING_LENGTH_BYTES] {
    len.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_onnxs_and_distinct() {
        // ONNX's TensorProto.DataType numbers, which the docs and the engine use.
        assert_eq!((FLOAT32, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL, FLOAT16, FLOAT64), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11));
        assert_eq!((UINT32, UINT64, BFLOAT16, FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ), (12, 13, 16, 17, 18, 19, 20));
        assert_eq!((UINT4, INT4, FLOAT4E2M1, FLOAT8E8M0, UINT2, INT2), (21, 22, 23, 24, 25, 26));
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| a < b), "ALL is strictly ordered");
            assert!(bits(*a).is_some());
        }
        assert_eq!(bits(14), None, "complex64 is not carried");
        assert_eq!(bits(0), None);
    }

    #[test]
    fn packed_sizes_round_up_to_whole_bytes() {
        assert_eq!(packed_bytes(INT4, 3), Some(2));
        assert_eq!(packed_bytes(UINT2, 5), Some(2));
        assert_eq!(packed_bytes(FLOAT16, 3), Some(6));
        assert_eq!(packed_bytes(UINT64, 2), Some(16));
        assert_eq!(packed_bytes(STRING, 2), None);
        assert_eq!(packed_bytes(UINT64, usize::MAX), None);
    }

    #[test]
    fn string_elements_split() {
        let data = [2, 0, 0, 0, b'h', b'i', 0, 0, 0, 0, 1, 0, 0, 0, b'x'];
        let (a, rest) = split_string(&data).unwrap();
        assert_eq!(a, b"hi");
        let (b, rest) = split_string(rest).unwrap();
        assert_eq!(b, b"");
        let (c, rest) = split_string(rest).unwrap();
        assert_eq!((c, rest), (&b"x"[..], &[][..]));
        assert_eq!(split_string(&[5, 0, 0, 0, b'a']), None);
        assert_eq!(split_string(&[1, 0]), None);
        assert_eq!(string_header(2), [2, 0, 0, 0]);
    }
}
