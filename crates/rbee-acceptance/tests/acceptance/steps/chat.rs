//! `rbee chat` in a pseudo-terminal, and lines of a command's output.

use cucumber::{then, when};
use expectrl::{Eof, Expect, Regex};

use crate::steps::commands::expand;
use crate::world::{PATIENCE, Rbee};

#[when(regex = r"^I chat in a terminal with `(.+)`$")]
async fn chat(world: &mut Rbee, line: String) {
    let line = expand(world, &line);
    let mut session = expectrl::Session::spawn(world.std_command(&line)).unwrap();
    session.set_expect_timeout(Some(PATIENCE));
    session.expect(">>> ").unwrap();
    world.chat = Some(session);
}

#[when(regex = r#"^I type "(.+)" and the answer ends$"#)]
async fn ask(world: &mut Rbee, text: String) {
    let session = world.chat.as_mut().expect("a chat");
    session.send_line(&text).unwrap();
    let end = tokio::task::block_in_place(|| session.expect(Regex(r"tok/s, stop: \w+\]")))
        .unwrap_or_else(|e| panic!("no answer to {text:?}: {e}"));
    world.chat_answer = String::from_utf8_lossy(end.before()).into_owned();
    tokio::task::block_in_place(|| session.expect(">>> ")).unwrap();
}

#[then(regex = r#"^the chat's answer contains "(.+)"$"#)]
async fn answer_contains(world: &mut Rbee, text: String) {
    assert!(world.chat_answer.contains(&text), "{}", world.chat_answer);
}

#[when(regex = r#"^I type "(.+)" and the chat ends$"#)]
async fn leave(world: &mut Rbee, text: String) {
    let mut session = world.chat.take().expect("a chat");
    session.send_line(&text).unwrap();
    tokio::task::block_in_place(|| session.expect(Eof)).unwrap();
    let status = tokio::task::block_in_place(|| session.get_process().wait()).unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

/// `stdout has a line with "a", "b" and "c"`: one line holds every quoted text.
#[then(regex = r#"^stdout has a line with (".+")$"#)]
async fn line_with(world: &mut Rbee, quoted: String) {
    let wanted: Vec<String> = quoted
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    let stdout = &world.last().stdout;
    assert!(
        stdout
            .lines()
            .any(|l| wanted.iter().all(|w| l.contains(w.as_str()))),
        "no line with all of {wanted:?}:\n{stdout}"
    );
}
