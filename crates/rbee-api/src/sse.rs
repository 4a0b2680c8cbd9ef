//! The wire form of every Server-Sent Event stream of rbee, and a decoder for them.
//!
//! Each event carries its kind in the SSE `event:` field and its JSON body in `data:`; a
//! stream ends with a final event followed by a bare `data: [DONE]`. A stream's events are
//! declared once, as an enum whose variants are listed with their `event:` names
//! ([`sse_events!`]); the names, the serialization and the parsing all come from that list.

/// The data of the last message of every stream.
pub const DONE: &str = "[DONE]";

/// `event:` name of narration messages, on every stream.
pub const EVENT_NARRATION: &str = "narration";
/// `event:` name of a failure reported mid-stream; its data is an [`crate::ErrorEnvelope`].
pub const EVENT_ERROR: &str = "error";

/// A message of a typed event stream: its `event:` name and its JSON `data:`, both ways.
pub trait SseEvent: Sized {
    fn event(&self) -> &'static str;
    fn data(&self) -> String;
    /// Reads one message; `None` for an event name the stream does not have.
    fn parse(event: &str, data: &str) -> Option<Result<Self, serde_json::Error>>;

    /// [`SseEvent::parse`] of a frame read from a stream.
    fn from_frame(frame: &SseFrame) -> Option<Result<Self, serde_json::Error>> {
        Self::parse(&frame.event, &frame.data)
    }
}

/// Declares an event stream: an enum whose variants each carry one JSON body, each listed
/// with its `event:` name; implements [`SseEvent`] from that list.
///
/// ```
/// rbee_api::sse_events! {
///     /// A stream of greetings.
///     #[derive(Debug, PartialEq)]
///     pub enum Greeting {
///         Hello(String) = "hello",
///         Count(u32) = "count",
///     }
/// }
/// use rbee_api::sse::SseEvent;
/// let e = Greeting::Count(3);
/// assert_eq!((e.event(), e.data().as_str()), ("count", "3"));
/// assert_eq!(Greeting::parse("hello", "\"hi\"").unwrap().unwrap(), Greeting::Hello("hi".into()));
/// assert!(Greeting::parse("bye", "{}").is_none());
/// ```
#[macro_export]
macro_rules! sse_events {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident($body:ty) = $event:expr),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant($body)),+
        }

        impl $crate::sse::SseEvent for $name {
            fn event(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $event),+
                }
            }

            fn data(&self) -> String {
                let json = match self {
                    $(Self::$variant(body) => serde_json::to_string(body)),+
                };
                json.unwrap_or_default()
            }

            fn parse(event: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
                $(
                    if event == $event {
                        return Some(serde_json::from_str(data).map(Self::$variant));
                    }
                )+
                None
            }
        }
    };
}

/// Implements [`SseEvent`] for a serde enum tagged by `stage` whose `event:` name is its
/// stage ([`crate::hive::DownloadEvent`], [`crate::worker::LoadingEvent`]); `stage()` must
/// name each variant as serde does (each type's tests check it).
macro_rules! sse_stages {
    ($name:ty) => {
        impl $crate::sse::SseEvent for $name {
            fn event(&self) -> &'static str {
                self.stage()
            }

            fn data(&self) -> String {
                serde_json::to_string(self).unwrap_or_default()
            }

            fn parse(event: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
                let parsed: Result<Self, _> = serde_json::from_str(data);
                match parsed {
                    Ok(e) if e.stage() != event => None,
                    other => Some(other),
                }
            }
        }
    };
}
pub(crate) use sse_stages;

/// Implements [`SseEvent`] for a type that is a stream's only kind of message, sent under
/// its `EVENT` name ([`crate::hive::LogLine`], [`crate::queen::LabSnapshot`]).
macro_rules! sse_single {
    ($name:ty) => {
        impl $crate::sse::SseEvent for $name {
            fn event(&self) -> &'static str {
                Self::EVENT
            }

            fn data(&self) -> String {
                serde_json::to_string(self).unwrap_or_default()
            }

            fn parse(event: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
                (event == Self::EVENT).then(|| serde_json::from_str(data))
            }
        }
    };
}
pub(crate) use sse_single;

/// One message read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    /// The `event:` field; `message` when absent, as the SSE standard says.
    pub event: String,
    pub data: String,
}

impl SseFrame {
    pub fn is_done(&self) -> bool {
        self.data == DONE
    }
}

/// Incremental parser for `text/event-stream` bodies: feed it chunks as they arrive, take
/// complete frames out. Comments (keep-alives) and unknown fields are skipped.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: String,
    pending: Vec<u8>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns every frame they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseFrame> {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let text: Vec<u8> = self.pending.drain(..valid).collect();
        self.buffer.push_str(&String::from_utf8_lossy(&text));
        if self.buffer.contains('\r') {
            self.buffer = self.buffer.replace("\r\n", "\n");
        }
        let mut frames = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = None;
            let mut data: Option<String> = None;
            for line in block.lines() {
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                match field {
                    "event" => event = Some(value.to_owned()),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            if let Some(data) = data {
                frames.push(SseFrame {
                    event: event.unwrap_or_else(|| "message".to_owned()),
                    data,
                });
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_are_reassembled() {
        let mut d = SseDecoder::new();
        assert!(d.feed(b"event: tok").is_empty());
        assert!(d.feed(b"en\ndata: {\"t\":\"\xE7").is_empty());
        let frames = d.feed(b"\x8C\xAB\"}\n\n: keep-alive\n\ndata: [DONE]\n\n");
        assert_eq!(
            frames,
            vec![
                SseFrame {
                    event: "token".into(),
                    data: "{\"t\":\"猫\"}".into()
                },
                SseFrame {
                    event: "message".into(),
                    data: DONE.into()
                },
            ]
        );
        assert!(frames[1].is_done());
    }

    #[test]
    fn multi_line_data_and_crlf_are_handled() {
        let mut d = SseDecoder::new();
        let frames = d.feed(b"data: a\r\ndata: b\r\n\r\n");
        assert_eq!(frames[0].data, "a\nb");
    }
}
