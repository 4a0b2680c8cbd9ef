//! The OpenAI-compatible API queen-rbee serves: `GET /v1/models`, `POST /v1/chat/completions`
//! and `POST /v1/completions`, as the official SDKs and the tools built on them speak it.
//!
//! Requests name only fields rbee honours, or OpenAI fields whose value leaves the request as
//! it is (the defaults SDKs and chat UIs send, [`NEUTRAL_FIELDS`]); any other field or value
//! is refused ([`parse_request`]) rather than silently ignored. Errors keep rbee's envelope
//! and add OpenAI's `type` and `param`, so both kinds of client read them.
//!
//! - `request`: the request bodies, the fields rbee honours and those it drops as neutral.
//! - `tools`: tool definitions and calls, in requests and answers.
//! - `response`: answers, streamed chunks, log-probabilities and errors.
//! - `models`: the model list and model ids (`<node>/<model ref>`).

mod models;
mod request;
mod response;
mod tools;

pub use models::*;
pub use request::*;
pub use response::*;
pub use tools::*;
