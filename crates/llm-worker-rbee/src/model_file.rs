//! Opening a GGUF file: header, metadata and a check that every tensor is really there.
//!
//! Everything that can be wrong with a model file — missing, not GGUF, truncated, an
//! architecture or tokenizer rbee cannot run — is found here, before the HTTP server starts,
//! so the worker can fail with one line naming the file and the problem.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, Value};
use rbee_api::worker::ModelInfo;

use crate::arch::ModelConfig;
use crate::gguf::Header;
pub use crate::gguf::ModelFileError;
use crate::tokenizer::Tokenizer;

/// A GGUF file whose header has been read and checked.
#[derive(Debug)]
pub struct ModelFile {
    pub path: PathBuf,
    /// The header; the vocabulary's arrays are not in its metadata but in [`Self::tokenizer`].
    pub content: Content,
    pub size_bytes: u64,
    /// The architecture's configuration, read once when the file is opened.
    config: ModelConfig,
    tokenizer: Arc<Tokenizer>,
}

impl ModelFile {
    /// Opens `path`, reads the header and checks that all tensor data lies inside the file.
    pub fn open(path: &Path) -> Result<Self, ModelFileError> {
        let file = Self::open_header(path)?;
        file.check_tensor_data()?;
        Ok(file)
    }

    /// Opens `path` and reads the header only: the file may be just the start of a model
    /// (the hive checks a model this way before downloading the rest).
    pub fn open_header(path: &Path) -> Result<Self, ModelFileError> {
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ModelFileError::NotFound {
                    path: path.to_owned(),
                }
            } else {
                ModelFileError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        };
        let file = File::open(path).map_err(io)?;
        let size_bytes = file.metadata().map_err(io)?.len();
        if file.metadata().map_err(io)?.is_dir() {
            return Err(ModelFileError::Unsupported {
                path: path.to_owned(),
                reason: "is a directory, expected a .gguf file".into(),
            });
        }
        let mut reader = BufReader::new(file);
        let mut magic = [0u8; 4];
        let read = read_up_to(&mut reader, &mut magic).map_err(io)?;
        if &magic[..read] != b"GGUF" {
            return Err(ModelFileError::NotGguf {
                path: path.to_owned(),
            });
        }
        reader.rewind().map_err(io)?;
        let mut content = Content::read(&mut reader).map_err(|e| {
            let reason = candle_message(&e);
            // A tensor type the header reader does not know is a format, not corruption.
            match unknown_format(&reason) {
                Some(format) => ModelFileError::Unsupported {
                    path: path.to_owned(),
                    reason: format!(
                        "format {format} is not supported (supported: {SUPPORTED_FORMATS})"
                    ),
                },
                None => ModelFileError::BadHeader {
                    path: path.to_owned(),
                    reason,
                },
            }
        })?;
        // The vocabulary leaves the metadata as it is read (Gemma's is ~30 MB there).
        let tokenizer = Tokenizer::from_gguf_metadata(&mut content.metadata);
        // The architecture, its hyper-parameters and its tensors must be ones the worker
        // implements, and so must its tokenizer.
        let header = Header {
            path,
            content: &content,
        };
        let config = ModelConfig::from_header(&header)?;
        config.check_tensors(&header)?;
        let tokenizer = tokenizer.map_err(|e| header.unsupported(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            content,
            size_bytes,
            config,
            tokenizer: Arc::new(tokenizer),
        })
    }

    /// The configuration of the transformer this file holds.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokenizer its metadata describes.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Fails unless every tensor's data lies inside the file.
    fn check_tensor_data(&self) -> Result<(), ModelFileError> {
        for (name, info) in &self.content.tensor_infos {
            let elems = info.shape.elem_count() as u64;
            let block = info.ggml_dtype.block_size() as u64;
            let bytes = elems / block * info.ggml_dtype.type_size() as u64;
            let needed = self.content.tensor_data_offset + info.offset + bytes;
            if needed > self.size_bytes {
                return Err(ModelFileError::Truncated {
                    path: self.path.clone(),
                    tensor: name.clone(),
                    needed,
                    size: self.size_bytes,
                });
            }
        }
        Ok(())
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// Typed access to the header's metadata and tensor names.
    pub fn header(&self) -> Header<'_> {
        Header {
            path: &self.path,
            content: &self.content,
        }
    }

    pub(crate) fn unsupported(&self, reason: impl Into<String>) -> ModelFileError {
        self.header().unsupported(reason)
    }

    /// The weight format most tensors use (norm vectors, always F32, are not counted).
    pub fn quantization(&self) -> GgmlDType {
        let mut counts: HashMap<GgmlDType, usize> = HashMap::new();
        for info in self.content.tensor_infos.values() {
            if info.shape.rank() >= 2 {
                *counts.entry(info.ggml_dtype).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(dtype, n)| (*n, dtype.type_size()))
            .map_or(GgmlDType::F32, |(dtype, _)| dtype)
    }

    /// The model's quantization as llama.cpp names it (`general.file_type`, e.g. `Q4_K_M`),
    /// else the format most of its weights use.
    pub fn quantization_name(&self) -> String {
        self.header()
            .integer("general.file_type")
            .and_then(file_type_name)
            .map_or_else(|| dtype_name(self.quantization()).to_owned(), str::to_owned)
    }

    /// The model description reported by `/v1/ready`.
    pub fn info(&self) -> Result<ModelInfo, ModelFileError> {
        let tokenizer_model = self
            .header()
            .string("tokenizer.ggml.model")
            .unwrap_or_default();
        let vocab_size = self.tokenizer().vocab_size();
        Ok(ModelInfo {
            path: self.path.display().to_string(),
            name: self.header().string("general.name"),
            license: self.header().string("general.license"),
            architecture: self.header().architecture()?,
            layers: self.header().arch_usize("block_count")?,
            context_length: self.header().arch_usize("context_length")?,
            vocab_size,
            embedding_length: self.header().arch_usize("embedding_length")?,
            bos_token_id: self
                .header()
                .integer("tokenizer.ggml.bos_token_id")
                .and_then(|v| u32::try_from(v).ok()),
            eos_token_id: self
                .header()
                .integer("tokenizer.ggml.eos_token_id")
                .and_then(|v| u32::try_from(v).ok()),
            quantization: self.quantization_name(),
            tokenizer: tokenizer_model,
            chat_template: self.header().string("tokenizer.chat_template"),
            size_bytes: self.size_bytes,
            parameters: (self.content.tensor_infos.values())
                .map(|t| t.shape.elem_count() as u64)
                .sum(),
            tensor_formats: self.tensor_formats(),
            kv_bytes_per_token: self.config().kv_bytes_per_token(),
            compute: None,
        })
    }

    /// How many tensors each weight format holds.
    pub fn tensor_formats(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for info in self.content.tensor_infos.values() {
            *counts
                .entry(dtype_name(info.ggml_dtype).to_owned())
                .or_default() += 1;
        }
        counts
    }
}

/// A Candle error as one line: without the backtrace Candle attaches when `RUST_BACKTRACE`
/// is set, and without any context lines.
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The conventional upper-case name of a GGML weight format (`Q4_K`, `F16`).
pub fn dtype_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// llama.cpp's names for `general.file_type` values.
pub fn file_type_name(file_type: u64) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// The weight formats a model may use: on rbee's CPU kernels, and Q2_K/Q3_K on Candle.
pub const SUPPORTED_FORMATS: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; Q2_K and Q3_K on Candle";

/// The GGML name of a tensor type id the header reader refused (`unknown dtype for tensor
/// 23`), if that is what `reason` says.
fn unknown_format(reason: &str) -> Option<String> {
    let id: u32 = reason
        .strip_prefix("unknown dtype for tensor ")?
        .trim()
        .parse()
        .ok()?;
    Some(match id {
        16 => "IQ2_XXS".into(),
        17 => "IQ2_XS".into(),
        18 => "IQ3_XXS".into(),
        19 => "IQ1_S".into(),
        20 => "IQ4_NL".into(),
        21 => "IQ3_S".into(),
        22 => "IQ2_S".into(),
        23 => "IQ4_XS".into(),
        24 => "I8".into(),
        25 => "I16".into(),
        26 => "I32".into(),
        27 => "I64".into(),
        28 => "F64".into(),
        29 => "IQ1_M".into(),
        34 => "TQ1_0".into(),
        35 => "TQ2_0".into(),
        39 => "MXFP4".into(),
        other => format!("with GGML type id {other}"),
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
