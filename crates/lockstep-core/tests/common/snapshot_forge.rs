//! Forging snapshots for the tests: read a snapshot's section frames, and rewrite one section's
//! decoded body with its framing and checksum redone (a forgery the checksums cannot catch).

/// Section frames of a snapshot: (start, kind, codec, body range).
pub fn sections(b: &[u8]) -> Vec<(usize, u8, u8, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = 20;
    while pos < b.len() {
        let stored = u64::from_le_bytes(b[pos + 10..pos + 18].try_into().unwrap()) as usize;
        out.push((pos, b[pos], b[pos + 1], pos + 18..pos + 18 + stored));
        pos += 18 + stored + 32;
    }
    out
}

/// `bytes` with section `index`'s decoded body replaced by what `edit` makes of it, framed
/// and checksummed again: a forgery the checksums cannot catch.
pub fn forge(bytes: &[u8], index: usize, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let frames = sections(bytes);
    let (start, kind, codec, body) = frames[index].clone();
    let mut decoded = if codec == 1 {
        let mut out = Vec::new();
        let mut b = &bytes[body.clone()];
        while !b.is_empty() {
            let raw = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
            let packed = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
            out.extend(lz4_flex::block::decompress(&b[8..8 + packed], raw).unwrap());
            b = &b[8 + packed..];
        }
        out
    } else {
        bytes[body.clone()].to_vec()
    };
    edit(&mut decoded);
    let mut frame = vec![kind, codec];
    frame.extend_from_slice(&(decoded.len() as u64).to_le_bytes());
    let stored: Vec<u8> = if codec == 1 {
        let mut s = Vec::new();
        for chunk in decoded.chunks(1 << 20) {
            let p = lz4_flex::block::compress(chunk);
            s.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            s.extend_from_slice(&(p.len() as u32).to_le_bytes());
            s.extend_from_slice(&p);
        }
        s
    } else {
        decoded
    };
    frame.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    frame.extend_from_slice(&stored);
    let sum = blake3::hash(&frame);
    frame.extend_from_slice(sum.as_bytes());
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&frame);
    out.extend_from_slice(&bytes[body.end + 32..]);
    out
}
