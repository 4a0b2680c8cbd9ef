//! Turning generated token ids into text events.
//!
//! Tokens are byte sequences that may end inside a multi-byte character, so bytes are held
//! back until they form complete UTF-8. Text that might be the beginning of a stop sequence
//! is held back too, until it is clear whether the stop sequence follows.

/// What a [`TextStream`] produced for one token.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Emitted {
    /// Text that is certainly part of the answer.
    pub text: String,
    /// A stop sequence was found: generation ends here.
    pub stopped: bool,
}

#[derive(Debug, Default)]
pub struct TextStream {
    bytes: Vec<u8>,
    held: String,
    stops: Vec<String>,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            bytes: Vec::new(),
            held: String::new(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Feeds the bytes of one token.
    pub fn push(&mut self, token_bytes: &[u8]) -> Emitted {
        self.bytes.extend_from_slice(token_bytes);
        let complete = take_complete_utf8(&mut self.bytes);
        self.held.push_str(&complete);
        self.release()
    }

    /// Ends the stream: whatever is held back is part of the answer.
    pub fn finish(&mut self) -> String {
        let mut rest = std::mem::take(&mut self.held);
        if !self.bytes.is_empty() {
            rest.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.bytes)));
        }
        rest
    }

    fn release(&mut self) -> Emitted {
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let text = self.held[..at].to_owned();
            self.held.clear();
            self.bytes.clear();
            return Emitted {
                text,
                stopped: true,
            };
        }
        // Keep the longest tail that is a proper prefix of some stop sequence.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_owned();
        self.held.drain(..cut);
        Emitted {
            text,
            stopped: false,
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = (stop.len() - 1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && stop.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Removes and returns the complete UTF-8 prefix of `bytes`. Invalid sequences become U+FFFD;
/// an incomplete character at the end stays in `bytes`.
fn take_complete_utf8(bytes: &mut Vec<u8>) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                bytes.clear();
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        bytes.drain(..valid + bad);
                    }
                    None => {
                        bytes.drain(..valid);
                        return out;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_character_split_across_tokens_is_emitted_whole() {
        let mut s = TextStream::new(vec![]);
        let cat = "猫".as_bytes();
        assert_eq!(s.push(&cat[..1]).text, "");
        assert_eq!(s.push(&cat[1..2]).text, "");
        assert_eq!(s.push(&cat[2..]).text, "猫");
        assert_eq!(s.push(b" ok").text, " ok");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = TextStream::new(vec![]);
        assert_eq!(s.push(&[b'a', 0xFF, b'b']).text, "a\u{FFFD}b");
        s.push(&[0xE7]);
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_sequence_across_tokens_ends_before_it() {
        let mut s = TextStream::new(vec!["END".into()]);
        assert_eq!(s.push(b"Hello E").text, "Hello ");
        assert_eq!(s.push(b"N").text, "");
        let e = s.push(b"D and more");
        assert_eq!(
            e,
            Emitted {
                text: String::new(),
                stopped: true
            }
        );
    }

    #[test]
    fn held_text_that_turns_out_not_to_stop_is_released() {
        let mut s = TextStream::new(vec!["\n\n".into()]);
        assert_eq!(s.push(b"line\n").text, "line");
        assert_eq!(s.push(b"next").text, "\nnext");
        assert_eq!(s.push(b"\n").text, "");
        assert_eq!(s.finish(), "\n");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut s = TextStream::new(vec!["b".into(), "a".into()]);
        let e = s.push(b"xxab");
        assert_eq!(
            e,
            Emitted {
                text: "xx".into(),
                stopped: true
            }
        );
    }
}
