//! GPT-2's reversible mapping between bytes and printable characters.
//!
//! Byte-level BPE vocabularies store every token as text in which each byte is replaced by
//! a visible character: printable Latin-1 bytes stand for themselves, the other 68 bytes are
//! shifted to U+0100 and up in byte order (so a space is `Ġ`, a newline `Ċ`).

use std::sync::OnceLock;

fn is_self_mapped(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

fn tables() -> &'static ([char; 256], [u8; 512]) {
    static TABLES: OnceLock<([char; 256], [u8; 512])> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut to_char = ['\0'; 256];
        let mut to_byte = [0u8; 512];
        let mut shifted = 0u32;
        for b in 0..=255u8 {
            let code = if is_self_mapped(b) {
                u32::from(b)
            } else {
                shifted += 1;
                255 + shifted
            };
            let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
            to_char[b as usize] = ch;
            to_byte[code as usize] = b;
        }
        (to_char, to_byte)
    })
}

/// The stand-in character of one byte.
pub(super) fn char_for_byte(b: u8) -> char {
    tables().0[b as usize]
}

/// Maps every byte of `text` to its stand-in character.
pub(super) fn encode(text: &str) -> String {
    text.bytes().map(char_for_byte).collect()
}

/// Maps stand-in characters back to bytes; characters outside the table keep their UTF-8.
pub(super) fn decode(token: &str) -> Vec<u8> {
    let (to_char, to_byte) = tables();
    let mut out = Vec::with_capacity(token.len());
    for ch in token.chars() {
        let code = ch as usize;
        if code < 512 && to_char[to_byte[code] as usize] == ch {
            out.push(to_byte[code]);
        } else {
            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_and_newline_map_to_gpt2_stand_ins() {
        assert_eq!(encode(" \n"), "\u{120}\u{10A}");
        assert_eq!(encode("Hi"), "Hi");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mapped: String = all.iter().map(|&b| tables().0[b as usize]).collect();
        assert_eq!(decode(&mapped), all);
        assert_eq!(mapped.chars().count(), 256);
    }

    #[test]
    fn multibyte_text_round_trips() {
        let text = "naïve 猫 🐈";
        assert_eq!(decode(&encode(text)), text.as_bytes());
    }
}
