//! Writing a GGUF model in another weight format: every 2-D weight is dequantized and
//! quantized again with Candle; norms stay F32 and all metadata is kept. A split model is
//! written as one file.
//!
//! K-quants pack 256 values per block, so a tensor whose rows are not a multiple of 256
//! (SmolLM2 is 576 wide) cannot use them. Such tensors fall back to a 32-value format of at
//! least the same precision, as llama.cpp's quantizer does: Q2_K/Q3_K/Q4_K → Q5_0,
//! Q5_K → Q5_1, Q6_K → Q8_0. The report says how many tensors each format received.
//!
//! The token embedding and output head are the tensors most sensitive to rounding (with
//! tied embeddings one table is both), so like llama.cpp they keep at least 8 bits: Q8_0
//! unless the target is F16 or F32.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use candle_core::Device;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};

use crate::model_file::{ModelFile, OpenTensor, TensorReader, dtype_name};

#[derive(Debug, thiserror::Error)]
pub enum RequantizeError {
    #[error(transparent)]
    File(#[from] crate::model_file::ModelFileError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("tensor `{0}`: {msg}", msg = crate::model_file::candle_message(.1))]
    Tensor(String, candle_core::Error),
}

/// How many tensors were written in each format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequantizeReport {
    pub tensors_by_format: BTreeMap<&'static str, usize>,
}

/// The format used for a tensor whose rows are `row_len` wide when `target` does not fit.
pub fn format_for_row(target: GgmlDType, row_len: usize) -> GgmlDType {
    if row_len.is_multiple_of(target.block_size()) {
        return target;
    }
    let fallback = match target {
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        GgmlDType::Q6K | GgmlDType::Q8K => GgmlDType::Q8_0,
        _ => GgmlDType::F16,
    };
    if row_len.is_multiple_of(fallback.block_size()) {
        fallback
    } else {
        GgmlDType::F16
    }
}

/// llama.cpp's `general.file_type` number for a whole-model format. K-quants are the
/// "small" mixes (`_S`): every tensor that can use the K-quant does.
fn file_type(target: GgmlDType) -> Option<u32> {
    Some(match target {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 14,
        GgmlDType::Q5K => 16,
        GgmlDType::Q6K => 18,
        _ => return None,
    })
}

/// Reads `src` and writes it to `dst` with its weights in `target` (or the fallback format
/// for tensors whose row width does not fit).
pub fn requantize(
    src: &Path,
    dst: &Path,
    target: GgmlDType,
) -> Result<RequantizeReport, RequantizeError> {
    let file = ModelFile::open(src)?;
    // The whole header again: an opened `ModelFile` keeps the vocabulary in its tokenizer,
    // and the new file must carry it. A split model's tensors come from all its shards.
    let mut reader =
        File::open(src).map_err(|e| RequantizeError::Io(src.display().to_string(), e))?;
    let content = gguf_file::Content::read(&mut reader)
        .map_err(|e| RequantizeError::Tensor("<header>".into(), e))?;
    let mut names: Vec<&String> = file.content.tensor_infos.keys().collect();
    names.sort_by_key(|n| file.locate(n).map(|(info, shard)| (shard, info.offset)));
    let mut data = TensorReader::new(&file);
    let mut report = RequantizeReport::default();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let Some(OpenTensor {
            info,
            reader,
            data_offset,
        }) = data.open(name)?
        else {
            continue;
        };
        let q = (info.read(reader, data_offset, &Device::Cpu))
            .map_err(|e| RequantizeError::Tensor(name.clone(), e))?;
        let dims = q.shape().dims().to_vec();
        let out = if dims.len() < 2 {
            q
        } else {
            let keeps_precision = matches!(name.as_str(), "token_embd.weight" | "output.weight")
                && !matches!(target, GgmlDType::F16 | GgmlDType::F32 | GgmlDType::BF16);
            let wanted = if keeps_precision {
                GgmlDType::Q8_0
            } else {
                target
            };
            let format = format_for_row(wanted, dims[dims.len() - 1]);
            let dense = q
                .dequantize(&Device::Cpu)
                .map_err(|e| RequantizeError::Tensor(name.clone(), e))?;
            QTensor::quantize(&dense, format)
                .map_err(|e| RequantizeError::Tensor(name.clone(), e))?
        };
        *report
            .tensors_by_format
            .entry(dtype_name(out.dtype()))
            .or_default() += 1;
        tensors.push((name.as_str(), out));
    }
    let mut metadata: Vec<(&str, Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.file_type" && !k.starts_with("split."))
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    if let Some(ft) = file_type(target) {
        metadata.push(("general.file_type", Value::U32(ft)));
    }
    metadata.sort_by_key(|(k, _)| *k);
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let tmp = dst.with_extension("gguf.partial");
    let io = |e: std::io::Error| RequantizeError::Io(dst.display().to_string(), e);
    let mut out = BufWriter::new(File::create(&tmp).map_err(io)?);
    gguf_file::write(&mut out, &meta_refs, &tensor_refs)
        .map_err(|e| RequantizeError::Tensor("<write>".into(), e))?;
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&tmp, dst).map_err(io)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_quants_fall_back_for_rows_not_multiple_of_256() {
        assert_eq!(format_for_row(GgmlDType::Q4K, 1536), GgmlDType::Q4K);
        assert_eq!(format_for_row(GgmlDType::Q4K, 576), GgmlDType::Q5_0);
        assert_eq!(format_for_row(GgmlDType::Q5K, 576), GgmlDType::Q5_1);
        assert_eq!(format_for_row(GgmlDType::Q6K, 576), GgmlDType::Q8_0);
        assert_eq!(format_for_row(GgmlDType::Q8_0, 576), GgmlDType::Q8_0);
        assert_eq!(format_for_row(GgmlDType::Q4_0, 20), GgmlDType::F16);
    }
}
