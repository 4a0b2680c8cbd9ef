//! `rbee logs --node N [--follow]`.

use futures::StreamExt;
use rbee_api::hive::LogLine;
use rbee_api::routes::queen as paths;
use rbee_api::sse::SseEvent;
use reqwest::Method;

use crate::cli::LogsArgs;
use crate::error::{Result, fail};
use crate::queen::Queen;

pub async fn run(queen: &Queen, args: &LogsArgs) -> Result<()> {
    let resp = queen
        .send(queen.request(Method::GET, paths::LOGS).query(&[
            ("node", args.node.as_str()),
            ("follow", if args.follow { "true" } else { "false" }),
        ]))
        .await?;
    let mut frames = Box::pin(rbee_http::client::frames(resp));
    loop {
        let frame = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            frame = frames.next() => frame,
        };
        match frame {
            None => return Ok(()),
            Some(Err(e)) => return Err(fail(format!("log stream from {} broke: {e}", args.node))),
            Some(Ok(frame)) => {
                if let Some(Ok(line)) = LogLine::from_frame(&frame) {
                    println!("[{}] {}", line.source, line.line);
                }
            }
        }
    }
}
