//! `security::parse_key` takes untrusted strings (trustedKeys, `lockstep verify --trust`,
//! secret keys): every input gives a key or a typed error, never a panic.

use lockstep_core::security::{parse_key, SecurityError};

#[test]
fn parse_key_refuses_non_ascii_without_panicking() {
    // 64 characters, but 'é' is two bytes: slicing by byte pairs would cut it in half.
    let key: String = "é".repeat(64);
    assert_eq!(key.chars().count(), 64);
    assert!(matches!(parse_key(&key), Err(SecurityError::BadKey { .. })));
    // 62 ASCII characters and one two-byte character: 64 bytes, a char boundary at byte 63.
    let mixed = format!("{}é", "a".repeat(62));
    assert_eq!(mixed.len(), 64);
    assert!(matches!(parse_key(&mixed), Err(SecurityError::BadKey { .. })));
    let e = parse_key(&mixed).unwrap_err();
    assert_eq!(e.code(), "E_BAD_KEY");
}

#[test]
fn parse_key_accepts_hex_of_either_case_and_nothing_else() {
    let lower = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let k = parse_key(lower).unwrap();
    assert_eq!(k[1], 0x11);
    assert_eq!(k[15], 0xff);
    assert_eq!(parse_key(&lower.to_uppercase()).unwrap(), k);
    assert_eq!(parse_key(&format!("  {lower}\n")).unwrap(), k, "surrounding whitespace is trimmed");
    // from_str_radix would take "+f" as 15: a sign is not a hex digit.
    let signed = format!("+f{}", &lower[2..]);
    assert!(parse_key(&signed).is_err());
    assert!(parse_key(&lower[..63]).is_err());
    assert!(parse_key(&format!("{}zz", &lower[..62])).is_err());
}
