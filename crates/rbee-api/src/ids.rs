//! Identifiers that cross process boundaries, each a validated newtype.
//!
//! A value is checked once, where it enters (deserialization, a command-line flag, `parse`),
//! and travels typed from there: a handler never re-parses a `String`. Every identifier
//! (de)serializes as its canonical string, so the wire format is plain JSON strings.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId {
    kind: &'static str,
    value: String,
    rule: &'static str,
}

impl InvalidId {
    pub(crate) fn new(kind: &'static str, value: String, rule: &'static str) -> Self {
        Self { kind, value, rule }
    }
}

impl fmt::Display for InvalidId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid {}: {}",
            self.value, self.kind, self.rule
        )
    }
}

impl std::error::Error for InvalidId {}

/// Declares a string newtype checked by `$valid`, with serde, `FromStr`, `Display`,
/// `AsRef<str>` and `Borrow<str>`.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $rule:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;

            fn try_from(value: String) -> Result<Self, InvalidId> {
                let valid: fn(&str) -> bool = $valid;
                if valid(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        value,
                        rule: $rule,
                    })
                }
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Names safe in URLs, file names and log lines: 1 to 128 characters, no `/`, no whitespace
/// or control characters.
fn plain_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.contains('/')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

id_type!(
    /// A node of the lab as registered with the queen (`workstation`), or `localhost` for the
    /// queen's own machine.
    NodeName,
    "node name",
    "use 1 to 64 ASCII letters, digits, `-`, `_` or `.`",
    |s| !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
);

id_type!(
    /// A worker process, named by the hive that spawned it (`worker-1a2b3c4d5e6f`).
    WorkerId,
    "worker id",
    "use 1 to 128 characters without `/`, spaces or control characters",
    plain_token
);

id_type!(
    /// An inference job on a worker, and the task of the queen that carries it: clients may
    /// choose it (to cancel it by name), else it is generated.
    JobId,
    "job id",
    "use 1 to 128 characters without `/`, spaces or control characters",
    plain_token
);

impl NodeName {
    /// The node a request is for when none is named: this machine, no registration needed.
    pub const LOCALHOST: &'static str = "localhost";

    /// This machine.
    pub fn localhost() -> Self {
        Self(Self::LOCALHOST.to_owned())
    }

    pub fn is_localhost(&self) -> bool {
        self.0 == Self::LOCALHOST
    }
}

impl WorkerId {
    /// `worker-` and the hex of `random`: how a hive names the workers it spawns.
    pub fn from_random(random: [u8; 6]) -> Self {
        Self(format!("worker-{}", hex(&random)))
    }
}

impl JobId {
    /// The UUID whose bytes are `uuid`, in its usual text form: how a job without a name
    /// given by its client is named.
    pub fn from_uuid(uuid: [u8; 16]) -> Self {
        let h = hex(&uuid);
        Self(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A task of the queen is the job its worker runs, under the same id.
pub type TaskId = JobId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_where_they_are_read() {
        assert!("workstation".parse::<NodeName>().is_ok());
        assert!("mac-mini.lan_2".parse::<NodeName>().is_ok());
        for bad in ["", "bad name", "a/b", "ünicode", &"x".repeat(65)] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad:?}");
        }
        assert!("worker-1a2b".parse::<WorkerId>().is_ok());
        for bad in ["", "a/b", "tab\there", "line\n"] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
        let err = "a b".parse::<JobId>().unwrap_err().to_string();
        assert!(err.contains("`a b` is not a valid job id"), "{err}");
    }

    #[test]
    fn identifiers_travel_as_plain_json_strings() {
        let node: NodeName = serde_json::from_str("\"workstation\"").unwrap();
        assert_eq!(node, "workstation");
        assert_eq!(serde_json::to_string(&node).unwrap(), "\"workstation\"");
        let err = serde_json::from_str::<NodeName>("\"no spaces\"").unwrap_err();
        assert!(err.to_string().contains("not a valid node name"), "{err}");
        assert!(NodeName::localhost().is_localhost());
    }

    #[test]
    fn generated_identifiers_are_valid() {
        let job = JobId::from_uuid([0xab; 16]);
        assert_eq!(job, "abababab-abab-abab-abab-abababababab");
        assert_eq!(job.as_str().parse::<JobId>().unwrap(), job);
        let worker = WorkerId::from_random([1, 2, 3, 4, 5, 6]);
        assert_eq!(worker, "worker-010203040506");
    }
}
