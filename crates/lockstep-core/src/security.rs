//! Signed agent modules with declared capabilities (docs/SECURITY.md).
//!
//! An agent module carries two custom sections: `lockstep.manifest` (JSON: name, version, ABI,
//! capabilities, resource requests) and `lockstep.signature` (ed25519 by a publisher key over
//! the module with the signature section stripped, and over the manifest). The runtime admits a
//! module only if a trusted key signed it (or, loudly, in development mode), then links only the
//! host imports its granted capabilities cover.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::abi;

/// Name of the custom section holding the manifest (JSON).
pub const MANIFEST_SECTION: &str = "lockstep.manifest";
/// Name of the custom section holding the publisher's key and ed25519 signature.
pub const SIGNATURE_SECTION: &str = "lockstep.signature";
/// Largest manifest accepted, bytes: bounds what a hostile module can make us parse.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;
const SIGNATURE_MAGIC: &[u8; 4] = b"LSIG";
const SIGNATURE_VERSION: u8 = 1;
const SIGNATURE_BYTES: usize = 4 + 1 + 32 + 64;
const DOMAIN: &[u8] = b"lockstep-module-signature-v1\0";

/// Why admission refused a module (docs/SECURITY.md); [`SecurityError::code`] is its `E_...`
/// code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// `E_UNSIGNED`: no signature section, and the runtime is not in development mode.
    #[error("module {module} is not signed; sign it with `npx lockstep sign`, or create the runtime with devMode: true (development only)")]
    Unsigned {
        /// The module's BLAKE3 hash, hex (its id in `loadModule`).
        module: String,
    },
    /// `E_UNTRUSTED_KEY`: signed by a key not in the runtime's trusted keys.
    #[error("{}", untrusted_message(module, key, *secret_key_given))]
    UntrustedKey {
        /// The module's BLAKE3 hash, hex.
        module: String,
        /// The publisher's public key, hex.
        key: String,
        /// The trusted keys hold the *secret* key of this publisher instead of its public key.
        secret_key_given: bool,
    },
    /// `E_BAD_SIGNATURE`: the signature does not verify: the module or its manifest changed
    /// after signing.
    #[error("the signature does not match the module: it was modified after signing (or signed for other bytes). Re-sign it")]
    BadSignature,
    /// `E_BAD_SIGNATURE`: the signature section is not `LSIG`, version 1, key, signature.
    #[error("malformed signature section: {reason}")]
    MalformedSignature {
        /// What is wrong with it.
        reason: String,
    },
    /// `E_DUPLICATE_SECTION`: more than one manifest or signature section.
    #[error("the module has {count} `{name}` sections; exactly one is allowed")]
    DuplicateSection {
        /// The section's name.
        name: String,
        /// How many the module has.
        count: usize,
    },
    /// `E_BAD_MANIFEST`: signed, but without a manifest section.
    #[error("the module is signed but has no `lockstep.manifest` section; sign it with a manifest")]
    MissingManifest,
    /// `E_BAD_MANIFEST`: the manifest is over [`MAX_MANIFEST_BYTES`].
    #[error("the manifest is {len} bytes; the limit is {max}")]
    ManifestTooLarge {
        /// Its size, bytes.
        len: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// `E_BAD_MANIFEST`: the manifest does not parse, has unknown fields, or breaks a rule of
    /// [`Manifest::parse`].
    #[error("invalid manifest: {reason}. See docs/SECURITY.md for the schema")]
    BadManifest {
        /// What is wrong with it.
        reason: String,
    },
    /// `E_UNDECLARED_IMPORT`: the module imports a host function whose capability it was not
    /// granted.
    #[error("the module imports `{import}`, which needs capability `{capability}`: {why}")]
    UndeclaredImport {
        /// The import, as `module::name`.
        import: String,
        /// The capability it needs, e.g. `send`.
        capability: String,
        /// Whether the manifest does not declare it or the policy does not grant it.
        why: String,
    },
    /// `E_RESOURCE_LIMIT`: the manifest asks for more fuel or memory than the runtime allows,
    /// and the resource policy is `Refuse`.
    #[error("the manifest asks for {what} = {asked}, above this runtime's limit of {limit}")]
    ResourceOverLimit {
        /// The manifest field, e.g. `resources.fuelPerCall`.
        what: String,
        /// The value asked for.
        asked: u64,
        /// The runtime's limit.
        limit: u64,
    },
    /// `E_INVALID_MODULE`: the module's sections cannot be read (no wasm header, truncated).
    #[error("malformed wasm module: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },
    /// `E_BAD_KEY`: a key is not 64 hex digits.
    #[error("invalid key: {reason}")]
    BadKey {
        /// What is wrong with it.
        reason: String,
    },
}

impl SecurityError {
    /// Stable machine-readable code, shown to JS as `error.code` (some variants share one).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsigned { .. } => "E_UNSIGNED",
            Self::UntrustedKey { .. } => "E_UNTRUSTED_KEY",
            Self::BadSignature => "E_BAD_SIGNATURE",
            Self::MalformedSignature { .. } => "E_BAD_SIGNATURE",
            Self::DuplicateSection { .. } => "E_DUPLICATE_SECTION",
            Self::MissingManifest | Self::ManifestTooLarge { .. } | Self::BadManifest { .. } => "E_BAD_MANIFEST",
            Self::UndeclaredImport { .. } => "E_UNDECLARED_IMPORT",
            Self::ResourceOverLimit { .. } => "E_RESOURCE_LIMIT",
            Self::Malformed { .. } => "E_INVALID_MODULE",
            Self::BadKey { .. } => "E_BAD_KEY",
        }
    }
}

type Result<T, E = SecurityError> = std::result::Result<T, E>;

fn untrusted_message(module: &str, key: &str, secret_key_given: bool) -> String {
    if secret_key_given {
        format!(
            "module {module} is signed by key {key}, and trustedKeys holds that publisher's SECRET key instead of this public key. \
             Pass the publicKey (keygen() and `lockstep keygen` return both), and keep the secret key out of runtimes: it signs modules, nothing else"
        )
    } else {
        format!("module {module} is signed by key {key}, which this runtime does not trust; add it to trustedKeys if you trust its publisher")
    }
}

/// A module's id in messages: its BLAKE3 hash (what `loadModule` returns), hex.
fn module_id(module: &[u8]) -> String {
    hex(blake3::hash(module).as_bytes())
}

/// Whom an agent may send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SendScope {
    /// No one (the default): a module that imports `send`, `send_plain` or `send_batch` is
    /// refused.
    #[default]
    None,
    /// Only the host (id 0).
    Host,
    /// Only other agents.
    Agents,
    /// Anyone.
    Any,
}

impl SendScope {
    /// Whether a message to `to` (0 = the host) is within this scope.
    pub fn allows(&self, to: u64) -> bool {
        match self {
            Self::None => false,
            Self::Host => to == abi::HOST_ID,
            Self::Agents => to != abi::HOST_ID,
            Self::Any => true,
        }
    }

    /// The widest scope both allow.
    pub fn meet(self, other: Self) -> Self {
        match (self, other) {
            (Self::None, _) | (_, Self::None) => Self::None,
            (Self::Any, x) | (x, Self::Any) => x,
            (a, b) if a == b => a,
            _ => Self::None,
        }
    }
}

/// What an agent may do: a manifest's request, the operator's policy, or what is granted (the
/// [`meet`](Capabilities::meet) of both). Everything is off by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capabilities {
    /// Whom it may send to (the `send`, `send_plain` and `send_batch` imports).
    #[serde(default)]
    pub send: SendScope,
    /// Model ids (SHA-256 hex) the agent may run, or "*" for any registered model.
    #[serde(default)]
    pub infer: Vec<String>,
    /// May use the `log` import.
    #[serde(default)]
    pub log: bool,
    /// May use the `random_u64` and `random_fill` imports.
    #[serde(default)]
    pub random: bool,
    /// May use the `tick` import.
    #[serde(default)]
    pub clock: bool,
}

impl Capabilities {
    /// Every capability: send to anyone, any model, log, random, clock (the default policy).
    pub fn all() -> Self {
        Self { send: SendScope::Any, infer: vec!["*".into()], log: true, random: true, clock: true }
    }

    /// Whether it may run the model with this id (always, with `"*"`).
    pub fn may_infer(&self, model_id: &str) -> bool {
        self.infer.iter().any(|m| m == "*" || m == model_id)
    }

    /// What both grant: the runtime's policy can only take away.
    pub fn meet(&self, policy: &Capabilities) -> Capabilities {
        let infer = if policy.infer.iter().any(|m| m == "*") {
            self.infer.clone()
        } else if self.infer.iter().any(|m| m == "*") {
            policy.infer.clone()
        } else {
            let p: BTreeSet<_> = policy.infer.iter().collect();
            self.infer.iter().filter(|m| p.contains(m)).cloned().collect()
        };
        Capabilities {
            send: self.send.meet(policy.send),
            infer,
            log: self.log && policy.log,
            random: self.random && policy.random,
            clock: self.clock && policy.clock,
        }
    }

    /// Bit flags (`abi::grant`) an agent can read with the `granted` import.
    pub fn bits(&self) -> i32 {
        let mut b = 0;
        if self.send.allows(abi::HOST_ID) {
            b |= abi::grant::SEND_HOST;
        }
        if self.send.allows(1) {
            b |= abi::grant::SEND_AGENTS;
        }
        if !self.infer.is_empty() {
            b |= abi::grant::INFER;
        }
        if self.log {
            b |= abi::grant::LOG;
        }
        if self.random {
            b |= abi::grant::RANDOM;
        }
        if self.clock {
            b |= abi::grant::CLOCK;
        }
        b
    }
}

/// Resources a manifest asks for; `None` takes the runtime's value. Above the runtime's limits a
/// request is clamped or refused (`ResourcePolicy`); below, it is honoured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// Fuel per ABI call (JSON `fuelPerCall`).
    pub fuel_per_call: Option<u64>,
    /// Cap on the agent's linear memory, bytes (JSON `memoryBytes`).
    pub memory_bytes: Option<u64>,
}

/// The JSON of a module's `lockstep.manifest` section (docs/SECURITY.md); unknown fields are
/// errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    /// The module's name, 1..=128 bytes.
    pub name: String,
    /// Its version, at most 64 bytes.
    pub version: String,
    /// The ABI version it speaks: must be this runtime's.
    pub abi: u32,
    /// What it asks to do (nothing by default).
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Fuel and memory it asks for (by default the runtime's).
    #[serde(default)]
    pub resources: Resources,
}

impl Manifest {
    /// Parses and checks a manifest: at most [`MAX_MANIFEST_BYTES`], name 1..=128 bytes,
    /// version at most 64, this runtime's ABI, at most 256 models in `capabilities.infer`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(SecurityError::ManifestTooLarge { len: bytes.len(), max: MAX_MANIFEST_BYTES });
        }
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| SecurityError::BadManifest { reason: e.to_string() })?;
        if m.name.is_empty() || m.name.len() > 128 || m.version.len() > 64 {
            return Err(SecurityError::BadManifest { reason: "name must be 1..=128 bytes and version at most 64".into() });
        }
        if !(abi::MIN_ABI_VERSION..=abi::ABI_VERSION).contains(&m.abi) {
            return Err(SecurityError::BadManifest {
                reason: format!("abi {} is not one this runtime speaks ({}..={})", m.abi, abi::MIN_ABI_VERSION, abi::ABI_VERSION),
            });
        }
        if m.capabilities.infer.len() > 256 {
            return Err(SecurityError::BadManifest { reason: "at most 256 models in capabilities.infer".into() });
        }
        Ok(m)
    }
}

/// A module split into its parts: where the custom sections we care about are.
pub struct Sections<'a> {
    /// The manifest section's payload, if any.
    pub manifest: Option<&'a [u8]>,
    /// The signature section's payload, if any.
    pub signature: Option<&'a [u8]>,
    /// The module bytes without any `lockstep.signature` section.
    pub unsigned: Vec<u8>,
    /// The module bytes without our sections (manifest and signature): what `sign` starts from.
    pub bare: Vec<u8>,
}

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Result<u32> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*pos).ok_or_else(|| SecurityError::Malformed { reason: "truncated LEB128".into() })?;
        *pos += 1;
        result |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| SecurityError::Malformed { reason: "LEB128 overflows u32".into() });
        }
    }
    Err(SecurityError::Malformed { reason: "LEB128 too long".into() })
}

fn write_leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Walks the module's sections (bounds-checked; the full validation is wasmtime's).
pub fn split(bytes: &[u8]) -> Result<Sections<'_>> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(SecurityError::Malformed { reason: "missing the \\0asm header".into() });
    }
    let mut unsigned = bytes[..8].to_vec();
    let mut bare = bytes[..8].to_vec();
    let (mut manifests, mut signatures) = (Vec::new(), Vec::new());
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let size = read_leb_u32(bytes, &mut pos)? as usize;
        let end = pos
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| SecurityError::Malformed { reason: format!("section at byte {start} overruns the module") })?;
        let (mut is_signature, mut is_manifest) = (false, false);
        if id == 0 {
            let mut p = pos;
            let name_len = read_leb_u32(bytes, &mut p)? as usize;
            let name_end =
                p.checked_add(name_len).filter(|&e| e <= end).ok_or_else(|| SecurityError::Malformed { reason: "custom section name overruns".into() })?;
            let name = &bytes[p..name_end];
            if name == MANIFEST_SECTION.as_bytes() {
                manifests.push(&bytes[name_end..end]);
                is_manifest = true;
            } else if name == SIGNATURE_SECTION.as_bytes() {
                signatures.push(&bytes[name_end..end]);
                is_signature = true;
            }
        }
        if !is_signature {
            unsigned.extend_from_slice(&bytes[start..end]);
            if !is_manifest {
                bare.extend_from_slice(&bytes[start..end]);
            }
        }
        pos = end;
    }
    for (name, list) in [(MANIFEST_SECTION, &manifests), (SIGNATURE_SECTION, &signatures)] {
        if list.len() > 1 {
            return Err(SecurityError::DuplicateSection { name: name.into(), count: list.len() });
        }
    }
    Ok(Sections { manifest: manifests.first().copied(), signature: signatures.first().copied(), unsigned, bare })
}

fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    write_leb_u32(&mut body, name.len() as u32);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = vec![0u8];
    write_leb_u32(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out
}

/// What the signature covers: the module without its signature section, and the manifest.
pub(crate) fn signing_message(unsigned_module: &[u8], manifest: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(Sha256::digest(unsigned_module));
    h.update(Sha256::digest(manifest));
    h.finalize().into()
}

/// Lowercase hex, without formatting machinery (tick hashes go through it on every tick).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses a 32-byte key (public, or secret for [`sign`]): 64 hex digits, either case,
/// surrounding whitespace ignored; anything else is `E_BAD_KEY`.
pub fn parse_key(hex_key: &str) -> Result<[u8; 32]> {
    let s = hex_key.trim();
    // Checked on bytes, never by slicing the str: a non-ASCII character is not a hex digit, and
    // slicing it mid-character would panic.
    if !s.is_ascii() {
        return Err(SecurityError::BadKey { reason: "not hexadecimal (contains non-ASCII characters)".into() });
    }
    if s.len() != 64 {
        return Err(SecurityError::BadKey { reason: format!("expected 64 hex characters, got {}", s.len()) });
    }
    let mut out = [0u8; 32];
    for (b, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *b = match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => hi << 4 | lo,
            _ => return Err(SecurityError::BadKey { reason: "not hexadecimal".into() }),
        };
    }
    Ok(out)
}

/// Checks that a 32-byte key is an ed25519 public key (a point of the curve), as trusted keys
/// must be. A secret key passed by mistake is not one about half the time: `E_BAD_KEY` then
/// says it may be a secret key. (The other half is caught when a module signed by that
/// publisher is refused: `E_UNTRUSTED_KEY` says so.)
pub fn check_public_key(key: &[u8; 32]) -> Result<()> {
    VerifyingKey::from_bytes(key).map(|_| ()).map_err(|_| SecurityError::BadKey {
        reason: "not an ed25519 public key (not a point of the curve): is it a secret key? Pass the publicKey of the pair (keygen() and `lockstep keygen` return both), never the secretKey".into(),
    })
}

/// [`parse_key`] for a key that must be a public key ([`check_public_key`]).
pub fn parse_public_key(hex_key: &str) -> Result<[u8; 32]> {
    let key = parse_key(hex_key)?;
    check_public_key(&key)?;
    Ok(key)
}

/// The value of one ASCII hex digit (either case).
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A new publisher key pair: (public, secret).
pub fn keygen() -> ([u8; 32], [u8; 32]) {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    (key.verifying_key().to_bytes(), key.to_bytes())
}

/// Embeds `manifest` (validated JSON) and signs module + manifest with `secret`. Any previous
/// manifest or signature section is replaced.
pub fn sign(module: &[u8], manifest: &[u8], secret: &[u8; 32]) -> Result<Vec<u8>> {
    Manifest::parse(manifest)?;
    let mut unsigned = split(module)?.bare;
    unsigned.extend_from_slice(&custom_section(MANIFEST_SECTION, manifest));
    let key = SigningKey::from_bytes(secret);
    let signature = key.sign(&signing_message(&unsigned, manifest));
    let mut payload = SIGNATURE_MAGIC.to_vec();
    payload.push(SIGNATURE_VERSION);
    payload.extend_from_slice(&key.verifying_key().to_bytes());
    payload.extend_from_slice(&signature.to_bytes());
    let mut signed = unsigned;
    signed.extend_from_slice(&custom_section(SIGNATURE_SECTION, &payload));
    Ok(signed)
}

/// The publisher key and signature in a signature section.
pub fn parse_signature(payload: &[u8]) -> Result<([u8; 32], [u8; 64])> {
    if payload.len() != SIGNATURE_BYTES || &payload[..4] != SIGNATURE_MAGIC || payload[4] != SIGNATURE_VERSION {
        return Err(SecurityError::MalformedSignature { reason: format!("expected {SIGNATURE_BYTES} bytes: LSIG, version 1, key, signature") });
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&payload[5..37]);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&payload[37..]);
    Ok((key, sig))
}

/// The result of checking a module against a trust store.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The parsed manifest, if the module has one.
    pub manifest: Option<Manifest>,
    /// The publisher key, when signed.
    pub publisher: Option<[u8; 32]>,
}

/// Checks signature and manifest. `dev_mode` admits unsigned modules (the caller says so loudly).
pub fn admit(module: &[u8], trusted: &[[u8; 32]], dev_mode: bool) -> Result<Admission> {
    let sections = split(module)?;
    let manifest_bytes = sections.manifest;
    let manifest = manifest_bytes.map(Manifest::parse).transpose()?;
    let Some(sig_payload) = sections.signature else {
        return if dev_mode { Ok(Admission { manifest, publisher: None }) } else { Err(SecurityError::Unsigned { module: module_id(module) }) };
    };
    let (key, sig) = parse_signature(sig_payload)?;
    let manifest_bytes = manifest_bytes.ok_or(SecurityError::MissingManifest)?;
    if !trusted.contains(&key) {
        // A trusted "key" that is the secret of this publisher: say so, not just "untrusted".
        let secret_key_given = trusted.iter().any(|t| SigningKey::from_bytes(t).verifying_key().to_bytes() == key);
        return Err(SecurityError::UntrustedKey { module: module_id(module), key: hex(&key), secret_key_given });
    }
    let vk = VerifyingKey::from_bytes(&key).map_err(|_| SecurityError::BadSignature)?;
    vk.verify(&signing_message(&sections.unsigned, manifest_bytes), &Signature::from_bytes(&sig)).map_err(|_| SecurityError::BadSignature)?;
    Ok(Admission { manifest, publisher: Some(key) })
}

/// The module's imports as "module::name" (empty if it does not parse).
pub fn list_imports(module: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload {
            Ok(wasmparser::Payload::ImportSection(reader)) => {
                for import in reader.into_imports().flatten() {
                    out.push(format!("{}::{}", import.module, import.name));
                }
            }
            Err(_) => break,
            _ => {}
        }
    }
    out
}

/// The capability an import needs, or None for imports every agent has.
pub(crate) fn capability_for_import(name: &str) -> Option<&'static str> {
    match name {
        abi::IMPORT_SEND | abi::IMPORT_SEND_PLAIN | abi::IMPORT_SEND_BATCH => Some("send"),
        abi::IMPORT_INFER | abi::IMPORT_GENERATE => Some("infer"),
        abi::IMPORT_LOG => Some("log"),
        abi::IMPORT_RANDOM | abi::IMPORT_RANDOM_FILL => Some("random"),
        abi::IMPORT_TICK => Some("clock"),
        _ => None,
    }
}

/// Whether `grants` covers the capability an import needs.
pub(crate) fn grants_import(grants: &Capabilities, capability: &str) -> bool {
    match capability {
        "send" => grants.send != SendScope::None,
        "infer" => !grants.infer.is_empty(),
        "log" => grants.log,
        "random" => grants.random,
        "clock" => grants.clock,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb_round_trip_and_bounds() {
        for v in [0u32, 1, 127, 128, 300, u32::MAX] {
            let mut b = Vec::new();
            write_leb_u32(&mut b, v);
            let mut p = 0;
            assert_eq!(read_leb_u32(&b, &mut p).unwrap(), v);
            assert_eq!(p, b.len());
        }
        assert!(read_leb_u32(&[0x80, 0x80], &mut 0).is_err());
        assert!(read_leb_u32(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], &mut 0).is_err());
    }

    #[test]
    fn scopes_and_policy_meet() {
        assert!(SendScope::Host.allows(0) && !SendScope::Host.allows(3));
        assert!(SendScope::Agents.allows(3) && !SendScope::Agents.allows(0));
        assert_eq!(SendScope::Any.meet(SendScope::Host), SendScope::Host);
        assert_eq!(SendScope::Host.meet(SendScope::Agents), SendScope::None);
        let asked = Capabilities { send: SendScope::Any, infer: vec!["a".into(), "b".into()], log: true, random: true, clock: true };
        let policy = Capabilities { send: SendScope::Agents, infer: vec!["b".into()], log: false, random: true, clock: true };
        let got = asked.meet(&policy);
        assert_eq!(got, Capabilities { send: SendScope::Agents, infer: vec!["b".into()], log: false, random: true, clock: true });
    }
}
