//! The `generate` import's wire format (`lockstep_abi::generate`; docs/ABI.md): requests in,
//! results out.

use lockstep_abi::generate as g;

use super::SamplingParams;

/// A request's prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Text, tokenized on the host.
    Text(Vec<u8>),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// A `generate` request as an agent sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRequest {
    /// The prompt.
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Stop sequences.
    pub stop: Vec<Vec<u8>>,
    /// The sampler's seed (0: derived).
    pub seed: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a request; why it is malformed if it is (too short, counts past the end or the
/// limits, token ids not a whole number of u32s).
pub fn parse(bytes: &[u8]) -> Result<AgentRequest, String> {
    if bytes.len() < g::REQUEST_HEADER_BYTES {
        return Err(format!("a request is at least {} bytes, got {}", g::REQUEST_HEADER_BYTES, bytes.len()));
    }
    let flags = u32_at(bytes, g::REQUEST_OFFSET_FLAGS);
    if flags & !g::FLAG_TOKEN_IDS != 0 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    let stops = u32_at(bytes, g::REQUEST_OFFSET_STOP_COUNT) as usize;
    if stops > g::MAX_STOP_SEQUENCES {
        return Err(format!("{stops} stop sequences; at most {}", g::MAX_STOP_SEQUENCES));
    }
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&bytes[g::REQUEST_OFFSET_SEED..g::REQUEST_OFFSET_SEED + 8]);
    let mut at = g::REQUEST_HEADER_BYTES;
    let mut stop = Vec::with_capacity(stops);
    for _ in 0..stops {
        let len = bytes.get(at..at + 4).map(|_| u32_at(bytes, at) as usize).ok_or("a stop sequence's length is cut off")?;
        at += 4;
        let s = bytes.get(at..at.checked_add(len).ok_or("a stop sequence's length overflows")?).ok_or("a stop sequence is cut off")?;
        stop.push(s.to_vec());
        at += len;
    }
    let rest = &bytes[at..];
    let prompt = if flags & g::FLAG_TOKEN_IDS != 0 {
        if !rest.len().is_multiple_of(4) {
            return Err(format!("token ids are 4 bytes each; the prompt has {} bytes", rest.len()));
        }
        Prompt::Tokens(rest.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    } else {
        Prompt::Text(rest.to_vec())
    };
    Ok(AgentRequest {
        prompt,
        max_tokens: u32_at(bytes, g::REQUEST_OFFSET_MAX_TOKENS),
        sampling: SamplingParams {
            temperature: f32::from_bits(u32_at(bytes, g::REQUEST_OFFSET_TEMPERATURE)),
            top_p: f32::from_bits(u32_at(bytes, g::REQUEST_OFFSET_TOP_P)),
            top_k: u32_at(bytes, g::REQUEST_OFFSET_TOP_K),
        },
        stop,
        seed: u64::from_le_bytes(seed),
    })
}

/// A request's bytes (what the SDK's helper writes).
pub fn encode(r: &AgentRequest) -> Vec<u8> {
    let mut b = vec![0u8; g::REQUEST_HEADER_BYTES];
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut b, g::REQUEST_OFFSET_FLAGS, if matches!(r.prompt, Prompt::Tokens(_)) { g::FLAG_TOKEN_IDS } else { 0 });
    put(&mut b, g::REQUEST_OFFSET_MAX_TOKENS, r.max_tokens);
    put(&mut b, g::REQUEST_OFFSET_TEMPERATURE, r.sampling.temperature.to_bits());
    put(&mut b, g::REQUEST_OFFSET_TOP_P, r.sampling.top_p.to_bits());
    put(&mut b, g::REQUEST_OFFSET_TOP_K, r.sampling.top_k);
    put(&mut b, g::REQUEST_OFFSET_STOP_COUNT, r.stop.len() as u32);
    b[g::REQUEST_OFFSET_SEED..g::REQUEST_OFFSET_SEED + 8].copy_from_slice(&r.seed.to_le_bytes());
    for s in &r.stop {
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s);
    }
    match &r.prompt {
        Prompt::Text(t) => b.extend_from_slice(t),
        Prompt::Tokens(ids) => ids.iter().for_each(|t| b.extend_from_slice(&t.to_le_bytes())),
    }
    b
}

/// A result message's payload: status, token count, the ids, their text.
pub fn result(status: u32, tokens: &[u32], text: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(g::RESULT_HEADER_BYTES + 4 * tokens.len() + text.len());
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    for t in tokens {
        p.extend_from_slice(&t.to_le_bytes());
    }
    p.extend_from_slice(text);
    p
}

/// The status of a result payload (`None` if it is shorter than a status).
pub fn status(payload: &[u8]) -> Option<u32> {
    payload.get(..4).map(|s| u32_at(s, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_malformed_ones_are_refused() {
        let r = AgentRequest {
            prompt: Prompt::Tokens(vec![256, 72, 105]),
            max_tokens: 12,
            sampling: SamplingParams { temperature: 0.7, top_k: 5, top_p: 0.9 },
            stop: vec![b"\n".to_vec(), b"end".to_vec()],
            seed: 99,
        };
        assert_eq!(parse(&encode(&r)).unwrap(), r);
        let t = AgentRequest { prompt: Prompt::Text(b"Hello".to_vec()), stop: vec![], ..r.clone() };
        assert_eq!(parse(&encode(&t)).unwrap(), t);
        let bytes = encode(&r);
        assert!(parse(&bytes[..20]).is_err());
        assert!(parse(&bytes[..bytes.len() - 1]).is_err(), "ids not a multiple of 4");
        let mut many = bytes.clone();
        many[g::REQUEST_OFFSET_STOP_COUNT] = 9;
        assert!(parse(&many).is_err());
        let mut cut = encode(&AgentRequest { prompt: Prompt::Text(vec![]), ..r.clone() });
        cut.truncate(g::REQUEST_HEADER_BYTES + 6);
        assert!(parse(&cut).unwrap_err().contains("cut off"));
        let mut flags = bytes;
        flags[0] = 3;
        assert!(parse(&flags).is_err());
        assert_eq!(result(1, &[65, 66], b"AB"), vec![1, 0, 0, 0, 2, 0, 0, 0, 65, 0, 0, 0, 66, 0, 0, 0, 65, 66]);
        assert_eq!(status(&result(3, &[], b"")), Some(3));
    }
}
