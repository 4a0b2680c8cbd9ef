//! `rbee chat`: a conversation in the terminal, turn after turn, with line editing and
//! history (rustyline). The queen this command reaches (or starts) stays up for the whole
//! chat, so the model stays loaded between turns; each turn sends the conversation so far,
//! and the worker reuses what its slot already holds of it.

use rbee_api::worker::ChatMessage;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::cli::ChatArgs;
use crate::commands::infer::{self, Ended, Target};
use crate::error::{KeeperError, Result, fail};
use crate::queen::Queen;

const PROMPT: &str = ">>> ";

const HELP: &str = "\
/clear           forget the conversation (the system message stays)
/model [<ref>]   show the model, or switch to another (the conversation stays)
/system [<text>] set the system message, or remove it
/exit            leave (or Ctrl+D); Ctrl+C stops an answer";

/// The conversation so far.
struct Conversation {
    system: Option<String>,
    turns: Vec<ChatMessage>,
}

impl Conversation {
    fn messages(&self) -> Vec<ChatMessage> {
        let system = (self.system.iter()).map(|s| ChatMessage::new("system", s.clone()));
        system.chain(self.turns.iter().cloned()).collect()
    }
}

/// What a line typed at the prompt asks for.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    Say(&'a str),
    Clear,
    Model(Option<&'a str>),
    System(Option<&'a str>),
    Help,
    Exit,
    Unknown(&'a str),
}

fn read(line: &str) -> Line<'_> {
    let line = line.trim();
    let Some(command) = line.strip_prefix('/') else {
        return Line::Say(line);
    };
    let (name, rest) = command
        .split_once(char::is_whitespace)
        .unwrap_or((command, ""));
    let rest = Some(rest.trim()).filter(|r| !r.is_empty());
    match name {
        "clear" => Line::Clear,
        "model" => Line::Model(rest),
        "system" => Line::System(rest),
        "help" | "?" => Line::Help,
        "exit" | "quit" | "bye" => Line::Exit,
        _ => Line::Unknown(name),
    }
}

pub async fn run(queen: &Queen, args: &ChatArgs, mut target: Target) -> Result<()> {
    let mut editor =
        DefaultEditor::new().map_err(|e| fail(format!("cannot open the terminal: {e}")))?;
    let history = rbee_api::dirs::state_dir().map(|d| d.join("chat_history"));
    if let Some(path) = &history {
        // A first chat has no history yet.
        let _ = editor.load_history(path);
    }
    let mut conversation = Conversation {
        system: args.placement.system.clone(),
        turns: Vec::new(),
    };
    eprintln!(
        "Chatting with {}{}. /help lists the commands; Ctrl+D leaves.",
        target.model,
        target
            .node
            .as_ref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default()
    );
    loop {
        let typed = tokio::task::block_in_place(|| editor.readline(PROMPT));
        let typed = match typed {
            Ok(line) => line,
            // Ctrl+C at the prompt drops the line, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(fail(format!("cannot read from the terminal: {e}"))),
        };
        if !typed.trim().is_empty() {
            let _ = editor.add_history_entry(typed.trim());
        }
        match read(&typed) {
            Line::Say("") => {}
            Line::Say(text) => {
                conversation.turns.push(ChatMessage::new("user", text));
                if let Err(e) = turn(queen, args, &target, &mut conversation).await {
                    save(&mut editor, history.as_deref());
                    return Err(e);
                }
            }
            Line::Clear => {
                conversation.turns.clear();
                eprintln!("Cleared the conversation.");
            }
            Line::Model(None) => eprintln!("{}", target.model),
            Line::Model(Some(reference)) => match infer::parse_model(reference) {
                Ok(model) => {
                    target.model = model;
                    eprintln!("Now chatting with {}.", target.model);
                }
                Err(e) => eprintln!("rbee: {e}"),
            },
            Line::System(text) => {
                conversation.system = text.map(str::to_owned);
                eprintln!(
                    "{}",
                    if text.is_some() {
                        "System message set."
                    } else {
                        "System message removed."
                    }
                );
            }
            Line::Help => eprintln!("{HELP}"),
            Line::Exit => break,
            Line::Unknown(name) => eprintln!("Unknown command /{name}; /help lists them."),
        }
    }
    save(&mut editor, history.as_deref());
    Ok(())
}

/// Keeps the lines typed for the next chat (best effort: a chat is not failed for it).
fn save(editor: &mut DefaultEditor, path: Option<&std::path::Path>) {
    if let Some(path) = path {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
}

/// One answer to the conversation's last message. A failed turn is reported and taken
/// back, and the chat goes on; only a refused key ends it.
async fn turn(
    queen: &Queen,
    args: &ChatArgs,
    target: &Target,
    conversation: &mut Conversation,
) -> Result<()> {
    let req = infer::task(
        target,
        None,
        Some(conversation.messages()),
        &args.generation,
    );
    match infer::answer(queen, &req, false).await {
        Ok(Ended::Answered(answer)) => {
            conversation
                .turns
                .push(ChatMessage::new("assistant", answer.text.clone()));
        }
        // What arrived before Ctrl+C stays, so the next turn can build on it.
        Ok(Ended::Interrupted { text }) if !text.is_empty() => {
            conversation.turns.push(ChatMessage::new("assistant", text));
        }
        Ok(Ended::Interrupted { .. }) => {
            conversation.turns.pop();
        }
        Err(e @ KeeperError::Auth(_)) => return Err(e),
        Err(e) => {
            eprintln!("rbee: {e}");
            conversation.turns.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_messages_unless_they_name_a_command() {
        assert_eq!(read("  hello there \n"), Line::Say("hello there"));
        assert_eq!(read("/clear"), Line::Clear);
        assert_eq!(read("/model"), Line::Model(None));
        assert_eq!(
            read("/model  file:/m.gguf "),
            Line::Model(Some("file:/m.gguf"))
        );
        assert_eq!(read("/system Be brief."), Line::System(Some("Be brief.")));
        assert_eq!(read("/bye"), Line::Exit);
        assert_eq!(read("/frobnicate now"), Line::Unknown("frobnicate"));
    }
}
