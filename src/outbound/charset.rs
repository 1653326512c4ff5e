//! The charsets R01 accepts (KOI8-R, windows-1251: "Request making rules") and the documented
//! transliteration of the few typographic characters a panel commonly sends, applied only to
//! those the configured charset cannot carry (windows-1251 holds « » — № and keeps them).

use encoding_rs::{Encoding, KOI8_R, WINDOWS_1251};

/// A request charset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// KOI8-R (RFC 1489).
    Koi8R,
    /// windows-1251.
    Windows1251,
}

impl Charset {
    /// Parses the configuration name.
    pub fn parse(name: &str) -> Option<Charset> {
        match name.to_ascii_lowercase().as_str() {
            "koi8-r" | "koi8r" => Some(Charset::Koi8R),
            "windows-1251" | "cp1251" => Some(Charset::Windows1251),
            _ => None,
        }
    }

    /// The MIME charset label (RFC 2046 §4.1.2).
    pub fn label(self) -> &'static str {
        match self {
            Charset::Koi8R => "koi8-r",
            Charset::Windows1251 => "windows-1251",
        }
    }

    /// The encoding_rs encoding.
    pub fn encoding(self) -> &'static Encoding {
        match self {
            Charset::Koi8R => KOI8_R,
            Charset::Windows1251 => WINDOWS_1251,
        }
    }

    /// Encodes strictly: `Err(c)` names the first character the charset cannot hold (after
    /// transliteration). encoding_rs's plain `encode` would write `&#171;` silently.
    pub fn encode(self, text: &str) -> Result<Vec<u8>, char> {
        let text = self.transliterate(text);
        let mut encoder = self.encoding().new_encoder();
        let mut out = Vec::with_capacity(text.len() + 16);
        let mut rest: &str = &text;
        loop {
            let need = encoder
                .max_buffer_length_from_utf8_without_replacement(rest.len())
                .unwrap_or(rest.len() * 4 + 16);
            let start = out.len();
            out.resize(start + need, 0);
            let (result, read, written) =
                encoder.encode_from_utf8_without_replacement(rest, &mut out[start..], true);
            out.truncate(start + written);
            match result {
                encoding_rs::EncoderResult::InputEmpty => return Ok(out),
                encoding_rs::EncoderResult::Unmappable(c) => return Err(c),
                encoding_rs::EncoderResult::OutputFull => rest = &rest[read..],
            }
        }
    }

    /// True when the charset has a code for `c` (no transliteration needed).
    pub fn holds(self, c: char) -> bool {
        let mut buf = [0u8; 4];
        let (_, _, bad) = self.encoding().encode(c.encode_utf8(&mut buf));
        !bad
    }

    /// The documented transliteration (see [`transliterate`]) of the characters this charset
    /// cannot carry; those it holds stay as they are.
    pub fn transliterate(self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match replacement(c) {
                Some(r) if !self.holds(c) => out.push_str(r),
                _ => out.push(c),
            }
        }
        out
    }

    /// The first character of `text` this charset cannot hold, if any.
    pub fn first_unencodable(self, text: &str) -> Option<char> {
        self.encode(text).err()
    }
}

/// The documented rule (README.md, "Characters"): « » „ “ ” → ", ‘ ’ ‚ → ', — – ‒ − → -,
/// № → N, … → ..., non-breaking and other spaces → space. None: no replacement.
fn replacement(c: char) -> Option<&'static str> {
    Some(match c {
        '«' | '»' | '„' | '“' | '”' => "\"",
        '‘' | '’' | '‚' => "'",
        '—' | '–' | '‒' | '−' => "-",
        '№' => "N",
        '…' => "...",
        '\u{a0}' | '\u{2007}' | '\u{202f}' | '\u{2009}' => " ",
        _ => return None,
    })
}

/// Replaces every typographic character of the documented rule by its ASCII equivalent,
/// whatever the charset (the KOI8-R view; [`Charset::transliterate`] keeps what a charset holds).
pub fn transliterate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match replacement(c) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn koi8r_round_trip_with_transliteration() {
        let bytes = Charset::Koi8R.encode("ООО «Ромашка» — №1").unwrap();
        let (back, _, bad) = KOI8_R.decode(&bytes);
        assert!(!bad);
        assert_eq!(back, "ООО \"Ромашка\" - N1");
    }

    #[test]
    fn windows1251_keeps_what_it_holds() {
        let text = "ООО «Ромашка» — №1 „x“ ‘y’ …\u{a0}end";
        let bytes = Charset::Windows1251.encode(text).unwrap();
        let (back, _, bad) = WINDOWS_1251.decode(&bytes);
        assert!(!bad);
        assert_eq!(back, text);
        // What windows-1251 lacks is still transliterated: figure dash, minus, thin space.
        let bytes = Charset::Windows1251.encode("1‒2 − 3\u{2009}4").unwrap();
        assert_eq!(WINDOWS_1251.decode(&bytes).0, "1-2 - 3 4");
    }

    #[test]
    fn unencodable_character_is_named() {
        assert_eq!(Charset::Koi8R.first_unencodable("日本"), Some('日'));
        assert_eq!(Charset::Windows1251.first_unencodable("€ ok"), None);
        assert_eq!(Charset::Koi8R.first_unencodable("Ünïcödé"), Some('Ü'));
    }

    #[test]
    fn long_text_encodes() {
        let text = "Москва ".repeat(2000);
        let bytes = Charset::Windows1251.encode(&text).unwrap();
        assert_eq!(bytes.len(), text.chars().count());
    }
}
