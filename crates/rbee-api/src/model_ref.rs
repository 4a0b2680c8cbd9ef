//! Model references as users write them: `hf:<org>/<repo>[@<revision>][:<QUANT or file
//! name>]` and `file:<absolute path>`. A reference is parsed once, where it enters, and travels as a
//! [`ModelRef`]; on the wire it is its canonical text.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Quantization picked when an `hf:` repository holds several GGUF files and none is named.
pub const DEFAULT_QUANT: &str = "Q4_K_M";

/// Why a text is not a model reference; its message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidModelRef(String);

impl std::fmt::Display for InvalidModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidModelRef {}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelRef {
    Hf {
        repo: String,
        /// A branch, tag or commit of the repository; `main` when absent.
        revision: Option<String>,
        /// A quantization (`Q8_0`) or a file name (`model.Q8_0.gguf`).
        selector: Option<String>,
    },
    File(PathBuf),
}

impl ModelRef {
    pub fn parse(text: &str) -> Result<Self, InvalidModelRef> {
        let text = text.trim();
        let fail = |message: String| Err(InvalidModelRef(message));
        if let Some(rest) = text.strip_prefix("hf:") {
            let (repo, selector) = match rest.split_once(':') {
                Some((repo, sel)) if !sel.is_empty() => (repo, Some(sel.to_owned())),
                Some((repo, _)) => (repo, None),
                None => (rest, None),
            };
            let (repo, revision) = match repo.split_once('@') {
                Some((repo, rev)) => (repo, Some(rev)),
                None => (repo, None),
            };
            if let Some(rev) = revision
                && (rev.is_empty()
                    || rev.starts_with('.')
                    || !rev
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
            {
                return fail(format!(
                    "`@{rev}` in `{text}` is not a revision: name a branch, tag or commit (letters, digits, `-`, `_`, `.`)"
                ));
            }
            let parts: Vec<&str> = repo.split('/').collect();
            let valid = |p: &str| {
                !p.is_empty()
                    && p != "."
                    && p != ".."
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if parts.len() != 2 || !parts.iter().all(|p| valid(p)) {
                return fail(format!(
                    "`{text}` is not a Hugging Face reference: expected hf:<org>/<repo>[@<revision>][:<QUANT or file>]"
                ));
            }
            if let Some(sel) = &selector
                && (sel.contains('/') || sel.contains(".."))
            {
                return fail(format!(
                    "`{sel}` in `{text}` is not a quantization or file name"
                ));
            }
            Ok(Self::Hf {
                repo: repo.to_owned(),
                // `@main` is what no revision means: one model, one catalog entry.
                revision: revision.filter(|r| *r != "main").map(str::to_owned),
                selector,
            })
        } else if let Some(path) = text.strip_prefix("file:") {
            Self::file(Path::new(path))
        } else {
            fail(format!(
                "`{text}` is not a model reference: use hf:<org>/<repo>[:<QUANT>] or file:/absolute/path.gguf"
            ))
        }
    }

    /// The reference of a local file, which must be named by an absolute path.
    pub fn file(path: &Path) -> Result<Self, InvalidModelRef> {
        if !path.is_absolute() {
            return Err(InvalidModelRef(format!(
                "`file:{}`: file references need an absolute path",
                path.display()
            )));
        }
        Ok(Self::File(path.to_owned()))
    }

    /// Where the model comes from.
    pub fn provider(&self) -> crate::hive::Provider {
        match self {
            Self::Hf { .. } => crate::hive::Provider::Hf,
            Self::File(_) => crate::hive::Provider::File,
        }
    }

    /// The canonical text of the reference (the catalog key).
    pub fn canonical(&self) -> String {
        match self {
            Self::Hf {
                repo,
                revision,
                selector,
            } => {
                let revision = revision.as_deref().map(|r| format!("@{r}"));
                let selector = selector.as_deref().map(|s| format!(":{s}"));
                format!(
                    "hf:{repo}{}{}",
                    revision.unwrap_or_default(),
                    selector.unwrap_or_default()
                )
            }
            Self::File(path) => format!("file:{}", path.display()),
        }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl std::str::FromStr for ModelRef {
    type Err = InvalidModelRef;

    fn from_str(s: &str) -> Result<Self, InvalidModelRef> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ModelRef {
    type Error = InvalidModelRef;

    fn try_from(s: String) -> Result<Self, InvalidModelRef> {
        Self::parse(&s)
    }
}

impl From<ModelRef> for String {
    fn from(r: ModelRef) -> String {
        r.canonical()
    }
}

/// The quantization named in a GGUF file name (`SmolLM2-135M.Q4_K_M.gguf` → `Q4_K_M`).
pub fn quant_of_file(name: &str) -> Option<String> {
    let stem = match crate::split::ShardName::parse(name) {
        Some(shard) => shard.prefix,
        None => name.strip_suffix(".gguf").unwrap_or(name),
    };
    stem.rsplit(['.', '-', '_'])
        .scan(String::new(), |acc, part| {
            *acc = if acc.is_empty() {
                part.to_owned()
            } else {
                format!("{part}_{acc}")
            };
            Some(acc.clone())
        })
        .take(3)
        .filter(|cand| is_quant_name(cand))
        .last()
        .map(|q| q.to_uppercase())
}

fn is_quant_name(s: &str) -> bool {
    let s = s.to_ascii_uppercase();
    let known = [
        "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M",
        "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q4_K", "Q5_K", "Q3_K",
    ];
    known.contains(&s.as_str())
}

/// The default model as `scripts/fetch-model.sh` stores it: `$RBEE_MODEL_CACHE`, else
/// `$XDG_CACHE_HOME/rbee/models`, else `~/.cache/rbee/models`. Whether it exists is the
/// caller's question.
pub fn fetched_model() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let cache = std::env::var_os("RBEE_MODEL_CACHE")
        .map(PathBuf::from)
        .or_else(|| crate::dirs::cache_dir().map(|dir| dir.join("models")))?;
    Some(cache.join("SmolLM2-135M-Instruct.Q4_1.gguf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_canonicalises() {
        let r = ModelRef::parse("hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0").unwrap();
        assert_eq!(
            r,
            ModelRef::Hf {
                repo: "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF".into(),
                revision: None,
                selector: Some("Q8_0".into())
            }
        );
        assert_eq!(
            r.canonical(),
            "hf:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q8_0"
        );
        assert_eq!(ModelRef::parse("hf:a/b").unwrap().canonical(), "hf:a/b");
        let pinned = ModelRef::parse("hf:a/b@v1.2:Q4_K_M").unwrap();
        assert_eq!(
            pinned,
            ModelRef::Hf {
                repo: "a/b".into(),
                revision: Some("v1.2".into()),
                selector: Some("Q4_K_M".into())
            }
        );
        assert_eq!(pinned.canonical(), "hf:a/b@v1.2:Q4_K_M");
        assert_eq!(
            ModelRef::parse("hf:a/b@3f2e1d0").unwrap().canonical(),
            "hf:a/b@3f2e1d0"
        );
        assert_eq!(
            ModelRef::parse("hf:a/b@main:Q8_0").unwrap().canonical(),
            "hf:a/b:Q8_0"
        );
        assert_eq!(
            ModelRef::parse(" file:/models/x.gguf ").unwrap(),
            ModelRef::File("/models/x.gguf".into())
        );
    }

    #[test]
    fn references_travel_as_their_canonical_text() {
        let r: ModelRef = serde_json::from_str("\"hf:a/b:Q8_0\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"hf:a/b:Q8_0\"");
        let err = serde_json::from_str::<ModelRef>("\"llama3\"").unwrap_err();
        assert!(
            err.to_string().contains("is not a model reference"),
            "{err}"
        );
        assert!(ModelRef::file(Path::new("relative.gguf")).is_err());
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "hf:just-a-name",
            "hf:a/b/c",
            "hf:../x",
            "file:relative.gguf",
            "llama3",
            "hf:a/b:../../etc",
            "hf:a/b@",
            "hf:a/b@..:Q8_0",
            "hf:a/b@refs/pr/1",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantization_is_read_from_file_names() {
        assert_eq!(
            quant_of_file("SmolLM2-135M-Instruct.Q4_K_M.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(
            quant_of_file("tinyllama-1.1b-chat.q8_0.gguf").as_deref(),
            Some("Q8_0")
        );
        assert_eq!(quant_of_file("model-Q4_1.gguf").as_deref(), Some("Q4_1"));
        assert_eq!(quant_of_file("model.gguf"), None);
        assert_eq!(
            quant_of_file("Q8_0/m-Q8_0-00002-of-00003.gguf").as_deref(),
            Some("Q8_0")
        );
    }
}
