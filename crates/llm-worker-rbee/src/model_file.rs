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
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use rbee_api::split::ShardName;
use rbee_api::worker::ModelInfo;

use crate::arch::ModelConfig;
use crate::gguf::Header;
pub use crate::gguf::ModelFileError;
use crate::tokenizer::Tokenizer;

/// A GGUF model whose header has been read and checked: one file, or the shards of a split
/// model (`-00001-of-00003.gguf`, named by its first).
#[derive(Debug)]
pub struct ModelFile {
    /// The file, or the first shard.
    pub path: PathBuf,
    /// The header; the vocabulary's arrays are not in its metadata but in [`Self::tokenizer`].
    /// A split model's tensors are all here, each read from its shard ([`Self::locate`]).
    pub content: Content,
    /// All shards together.
    pub size_bytes: u64,
    shards: Vec<Shard>,
    /// Which shard holds each tensor (absent: the first).
    shard_of: HashMap<String, usize>,
    /// The architecture's configuration, read once when the file is opened.
    config: ModelConfig,
    tokenizer: Arc<Tokenizer>,
}

/// One file of a model and where its tensor data starts.
#[derive(Debug, Clone)]
pub struct Shard {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub data_offset: u64,
}

impl ModelFile {
    /// Opens `path` (and, for a split model, its other shards beside it), reads the headers
    /// and checks that all tensor data lies inside the files.
    pub fn open(path: &Path) -> Result<Self, ModelFileError> {
        let mut file = Self::open_header(path)?;
        file.open_other_shards()?;
        if file.shards.len() > 1 {
            file.config.check_tensors(&file.header())?;
        }
        file.check_tensor_data()?;
        Ok(file)
    }

    /// Opens `path` and reads its header only: the file may be just the start of a model (the
    /// hive checks a model this way before downloading the rest), or the first shard of a
    /// split one (whose tensors are then not all there to check).
    pub fn open_header(path: &Path) -> Result<Self, ModelFileError> {
        let (mut content, size_bytes) = read_header(path)?;
        // The vocabulary leaves the metadata as it is read (Gemma's is ~30 MB there).
        let tokenizer = Tokenizer::from_gguf_metadata(&mut content.metadata);
        // The architecture and its hyper-parameters must be ones the worker implements, and
        // so must its tokenizer.
        let header = Header {
            path,
            content: &content,
        };
        if let Some(no) = header.integer("split.no").filter(|&n| n > 0) {
            let first = (path.file_name().and_then(|n| n.to_str()))
                .and_then(ShardName::parse)
                .map_or_else(|| "the first shard".to_owned(), |s| s.sibling(1));
            return Err(header.unsupported(format!(
                "this is shard {} of a split model, whose metadata is in the first; give {first}",
                no + 1
            )));
        }
        let config = ModelConfig::from_header(&header)?;
        if split_count(&header)? == 1 {
            config.check_tensors(&header)?;
        }
        let tokenizer = tokenizer.map_err(|e| header.unsupported(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            shards: vec![Shard {
                path: path.to_owned(),
                size_bytes,
                data_offset: content.tensor_data_offset,
            }],
            shard_of: HashMap::new(),
            content,
            size_bytes,
            config,
            tokenizer: Arc::new(tokenizer),
        })
    }

    /// Reads the headers of a split model's other shards and adds their tensors; checks that
    /// each is the shard its name says and that together they hold every tensor.
    fn open_other_shards(&mut self) -> Result<(), ModelFileError> {
        let count = split_count(&self.header())?;
        if count == 1 {
            return Ok(());
        }
        let name = self.path.file_name().and_then(|n| n.to_str());
        let Some(first) = name.and_then(ShardName::parse).filter(|s| s.number == 1) else {
            return Err(self.unsupported(format!(
                "the model is split into {count} files, but this file is not named as the first of them (`<name>-00001-of-{count:05}.gguf`); give the path of the first shard"
            )));
        };
        if first.count != count {
            return Err(self.unsupported(format!(
                "the file name says {} shards but its header says {count}",
                first.count
            )));
        }
        for number in 2..=count {
            let path = self.path.with_file_name(first.sibling(number));
            let (content, size_bytes) = read_header(&path).map_err(|e| match e {
                ModelFileError::NotFound { path } => ModelFileError::MissingShard {
                    path,
                    number,
                    count,
                },
                other => other,
            })?;
            let header = Header {
                path: &path,
                content: &content,
            };
            let said = header.integer("split.no");
            if said != Some(u64::from(number - 1)) {
                let found = said.map_or("a file with no `split.no`".to_owned(), |n| {
                    format!("shard {}", n + 1)
                });
                return Err(header.unsupported(format!(
                    "expected shard {number} of {count}, found {found}; the shards are misnamed or from different models (download them again)"
                )));
            }
            let index = self.shards.len();
            self.shards.push(Shard {
                path: path.clone(),
                size_bytes,
                data_offset: content.tensor_data_offset,
            });
            self.size_bytes += size_bytes;
            if let Some(twice) =
                (content.tensor_infos.keys()).find(|t| self.content.tensor_infos.contains_key(*t))
            {
                return Err(
                    header.unsupported(format!("tensor `{twice}` is in more than one shard"))
                );
            }
            for (tensor, info) in content.tensor_infos {
                self.shard_of.insert(tensor.clone(), index);
                self.content.tensor_infos.insert(tensor, info);
            }
        }
        let expected = self.header().integer("split.tensors.count");
        let found = self.content.tensor_infos.len() as u64;
        if expected.is_some_and(|n| n != found) {
            return Err(self.unsupported(format!(
                "the shards hold {found} tensors, the first says {} (a shard is from another model?)",
                expected.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// The files of the model, the first first.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Tensor `name`'s description and the number of the shard (in [`Self::shards`]) that
    /// holds its data.
    pub fn locate(&self, name: &str) -> Option<(&TensorInfo, usize)> {
        let info = self.content.tensor_infos.get(name)?;
        Some((info, self.shard_of.get(name).copied().unwrap_or(0)))
    }
}

/// Reads the GGUF header of one file, and its size.
fn read_header(path: &Path) -> Result<(Content, u64), ModelFileError> {
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
    let content = Content::read(&mut reader).map_err(|e| {
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
    Ok((content, size_bytes))
}

/// How many files the model is split into (`split.count`; 1 when absent).
fn split_count(header: &Header<'_>) -> Result<u32, ModelFileError> {
    match header.integer("split.count") {
        None | Some(0) => Ok(1),
        Some(n) => {
            u32::try_from(n).map_err(|_| header.unsupported(format!("`split.count` is {n}")))
        }
    }
}

impl ModelFile {
    /// The configuration of the transformer this file holds.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokenizer its metadata describes.
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Fails unless every tensor's data lies inside its file.
    fn check_tensor_data(&self) -> Result<(), ModelFileError> {
        for name in self.content.tensor_infos.keys() {
            let Some((info, shard)) = self.locate(name) else {
                continue;
            };
            let shard = &self.shards[shard];
            let elems = info.shape.elem_count() as u64;
            let block = info.ggml_dtype.block_size() as u64;
            let bytes = elems / block * info.ggml_dtype.type_size() as u64;
            let needed = shard.data_offset + info.offset + bytes;
            if needed > shard.size_bytes {
                return Err(ModelFileError::Truncated {
                    path: shard.path.clone(),
                    tensor: name.clone(),
                    needed,
                    size: shard.size_bytes,
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

/// A tensor's description, the reader of the file holding it, and where that file's tensor
/// data starts.
pub struct OpenTensor<'a, 'r> {
    pub info: &'a TensorInfo,
    pub reader: &'r mut BufReader<File>,
    pub data_offset: u64,
}

/// Reads tensor data from a model's files, opening each file once, when first needed.
pub struct TensorReader<'a> {
    file: &'a ModelFile,
    readers: Vec<Option<BufReader<File>>>,
}

impl<'a> TensorReader<'a> {
    pub fn new(file: &'a ModelFile) -> Self {
        Self {
            file,
            readers: file.shards.iter().map(|_| None).collect(),
        }
    }

    /// Tensor `name` ready to be read; `None` when the model has no such tensor.
    pub fn open(&mut self, name: &str) -> Result<Option<OpenTensor<'a, '_>>, ModelFileError> {
        let file: &'a ModelFile = self.file;
        let Some((info, index)) = file.locate(name) else {
            return Ok(None);
        };
        let shard = &file.shards[index];
        let reader =
            match self.readers[index].take() {
                Some(reader) => reader,
                None => BufReader::new(File::open(&shard.path).map_err(|source| {
                    ModelFileError::Io {
                        path: shard.path.clone(),
                        source,
                    }
                })?),
            };
        Ok(Some(OpenTensor {
            info,
            reader: self.readers[index].insert(reader),
            data_offset: shard.data_offset,
        }))
    }

    /// Fills `out` with tensor `name`'s stored bytes.
    pub fn read(&mut self, name: &str, out: &mut [u8]) -> Result<(), ModelFileError> {
        let path = |file: &ModelFile| file.locate(name).map(|(_, i)| file.shards[i].path.clone());
        let io = |source| ModelFileError::Io {
            path: path(self.file).unwrap_or_default(),
            source,
        };
        let Some(OpenTensor {
            info,
            reader,
            data_offset,
        }) = self.open(name)?
        else {
            return Err(self.file.unsupported(format!("tensor `{name}` is missing")));
        };
        let at = data_offset + info.offset;
        let result = reader
            .seek(std::io::SeekFrom::Start(at))
            .and_then(|_| reader.read_exact(out));
        result.map_err(io)
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
