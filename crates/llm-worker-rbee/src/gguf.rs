//! Typed reading of a GGUF header's metadata, and what can be wrong with a model file.
//!
//! The transformer's configuration (`arch`) and the opened file (`model_file`) both read the
//! header through [`Header`]; neither depends on the other for it.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("model file {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("model file {path} cannot be read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file's own bytes are never part of the message: the hive passes it to clients.
    #[error("model file {path} is not a GGUF file (it does not start with \"GGUF\")")]
    NotGguf { path: PathBuf },
    #[error("model file {path} has a corrupt or truncated GGUF header: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error(
        "model file {path} is truncated: tensor `{tensor}` ends at byte {needed} but the file has {size} bytes (re-download it)"
    )]
    Truncated {
        path: PathBuf,
        tensor: String,
        needed: u64,
        size: u64,
    },
    #[error(
        "model file {path} is missing: it is shard {number} of the {count} files this model is split into (download every shard into the same folder)"
    )]
    MissingShard {
        path: PathBuf,
        number: u32,
        count: u32,
    },
    #[error("model file {path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
}

/// A view of a GGUF header: its metadata values by type, and its tensor names.
#[derive(Clone, Copy)]
pub struct Header<'a> {
    pub path: &'a Path,
    pub content: &'a Content,
}

impl Header<'_> {
    pub fn unsupported(&self, reason: impl Into<String>) -> ModelFileError {
        ModelFileError::Unsupported {
            path: self.path.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn architecture(&self) -> Result<String, ModelFileError> {
        self.string("general.architecture")
            .ok_or_else(|| self.unsupported("`general.architecture` is missing"))
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.content.metadata.get(key)?.to_string().ok().cloned()
    }

    /// An integer metadata value of any width.
    pub fn integer(&self, key: &str) -> Option<u64> {
        match self.content.metadata.get(key)? {
            Value::U8(v) => Some(u64::from(*v)),
            Value::U16(v) => Some(u64::from(*v)),
            Value::U32(v) => Some(u64::from(*v)),
            Value::U64(v) => Some(*v),
            Value::I8(v) => u64::try_from(*v).ok(),
            Value::I16(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    pub fn float(&self, key: &str) -> Option<f64> {
        match self.content.metadata.get(key)? {
            Value::F32(v) => Some(f64::from(*v)),
            Value::F64(v) => Some(*v),
            _ => None,
        }
    }

    /// `<architecture>.<key>` as an integer, required.
    pub fn arch_usize(&self, key: &str) -> Result<usize, ModelFileError> {
        let arch = self.architecture()?;
        let full = format!("{arch}.{key}");
        self.integer(&full)
            .map(|v| v as usize)
            .ok_or_else(|| self.unsupported(format!("`{full}` is missing")))
    }

    /// Whether the file holds a tensor of this name.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}
