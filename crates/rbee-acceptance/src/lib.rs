//! The harness of rbee's executable specification (`features/*.feature`, run by
//! `tests/acceptance`): a small cluster of real hosts built on this machine.
//!
//! - [`cluster`]: a bridge, one network namespace per compute node, each with its own
//!   `sshd`, hostname, data directory and environment; links to cut; a sweep that removes
//!   everything a run (even an interrupted one) created, and a check that it did.
//! - [`processes`]: which rbee processes run in a namespace, or below this process.
//! - [`command_line`]: splitting a step's command line the way a shell would.
//!
//! Nothing here fakes rbee: the hosts run the real binaries, reached over real SSH and HTTP.

#![allow(clippy::unwrap_used)]

pub mod cluster;
pub mod processes;

/// Splits a command line into words: whitespace separates, double or single quotes group.
pub fn command_line(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn command_lines_split_like_a_shell() {
        assert_eq!(
            command_line(r#"rbee infer --prompt "Hello there" --x 'a b' c"#),
            [
                "rbee",
                "infer",
                "--prompt",
                "Hello there",
                "--x",
                "a b",
                "c"
            ]
        );
        assert_eq!(command_line(r#"--stop """#), ["--stop", ""]);
    }
}
