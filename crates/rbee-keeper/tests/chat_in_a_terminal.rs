//! `rbee chat` in a pseudo-terminal, typed at as a user would.

use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use expectrl::{ControlCode, Eof, Expect, Regex, Session};
use serde_json::Value;

use crate::support::User;

/// How many slots of the one worker the chat loaded are busy.
async fn busy_slots(user: &User) -> Option<u64> {
    let url = format!("{}/v2/workers/list", user.queen_url);
    let list: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    let w = list["workers"].get(0)?;
    Some(w["slots_total"].as_u64()? - w["slots_available"].as_u64()?)
}

async fn wait_for_busy(user: &User, busy: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while busy_slots(user).await != Some(busy) {
        assert!(Instant::now() < deadline, "never {busy} busy slots");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// The session's calls block; the runtime's other thread serves the HTTP client meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_answers_turn_after_turn_and_ctrl_c_stops_only_the_answer() {
    let user = User::new();
    let mut chat =
        Session::spawn(user.rbee_std(&["chat", "--temperature", "0", "--system", "Be brief."]))
            .unwrap();
    chat.set_expect_timeout(Some(Duration::from_secs(120)));
    chat.expect("Chatting with file:").unwrap();
    chat.expect(">>> ").unwrap();

    chat.send_line("What is the capital of France?").unwrap();
    let answered = chat
        .expect(Regex(
            r"\[(\d+) tokens in [0-9.]+ s, [0-9.]+ tok/s, stop: eos\]",
        ))
        .unwrap();
    let answer = String::from_utf8_lossy(answered.before()).into_owned();
    assert!(answer.contains("Paris"), "{answer}");
    chat.expect(">>> ").unwrap();

    // The second turn is answered with the first in view.
    chat.send_line("And of Italy?").unwrap();
    let answered = chat.expect(Regex(r"stop: eos\]")).unwrap();
    let second = String::from_utf8_lossy(answered.before()).into_owned();
    assert!(second.contains("Rome"), "{second}");
    chat.expect(">>> ").unwrap();

    chat.send_line("/model").unwrap();
    chat.expect("SmolLM2-135M-Instruct.Q4_1.gguf").unwrap();
    chat.expect(">>> ").unwrap();

    // Ctrl+C while an answer streams: the answer stops, its slot comes free, the chat stays.
    chat.send_line("Count from 1 to 1000, one number per line.")
        .unwrap();
    wait_for_busy(&user, 1).await;
    chat.send(ControlCode::EndOfText).unwrap();
    chat.expect("Canceled.").unwrap();
    chat.expect(">>> ").unwrap();
    wait_for_busy(&user, 0).await;

    chat.send_line("/clear").unwrap();
    chat.expect("Cleared the conversation.").unwrap();
    chat.send_line("/nonsense").unwrap();
    chat.expect("Unknown command /nonsense").unwrap();
    chat.send_line("/exit").unwrap();
    chat.expect(Eof).unwrap();
    let status = chat.get_process().wait().unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");

    // The chat's own queen went with it; the typed lines are in the history.
    assert!(
        reqwest::get(format!("{}/health", user.queen_url))
            .await
            .is_err()
    );
    let history = user.home.path().join(".local/state/rbee/chat_history");
    let history = std::fs::read_to_string(&history).unwrap();
    assert!(history.contains("And of Italy?"), "{history}");
}
