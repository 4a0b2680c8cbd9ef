//! Splitting a GGUF model into shards the way llama.cpp's `gguf-split` does: the first
//! shard carries all metadata, every shard carries `split.no`, `split.count` and
//! `split.tensors.count`, and the tensors are spread over the shards in file order, each
//! file named `<stem>-0000k-of-0000n.gguf`. Tests hold rbee to llama.cpp loading the same
//! shards, so the layout is checked, not assumed.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{self, Value};

/// Writes `src` as `count` shards into `dir`; their paths, the first first.
pub fn split_gguf(src: &Path, dir: &Path, count: u16) -> Vec<PathBuf> {
    let mut reader = File::open(src).unwrap();
    let content = gguf_file::Content::read(&mut reader).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|n| content.tensor_infos[*n].offset);
    let tensors: Vec<(&str, QTensor)> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                content.tensor(&mut reader, n, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    let stem = src.file_stem().unwrap().to_string_lossy();
    let total = i32::try_from(tensors.len()).unwrap();
    let per_shard = tensors.len().div_ceil(usize::from(count));
    let mut paths = Vec::new();
    for (index, chunk) in tensors.chunks(per_shard).enumerate() {
        let number = u16::try_from(index).unwrap();
        let split = [
            ("split.no", Value::U16(number)),
            ("split.count", Value::U16(count)),
            ("split.tensors.count", Value::I32(total)),
        ];
        let mut metadata: Vec<(&str, &Value)> = split.iter().map(|(k, v)| (*k, v)).collect();
        if index == 0 {
            metadata.extend(content.metadata.iter().map(|(k, v)| (k.as_str(), v)));
        }
        let chunk: Vec<(&str, &QTensor)> = chunk.iter().map(|(n, t)| (*n, t)).collect();
        let path = dir.join(format!("{stem}-{:05}-of-{count:05}.gguf", index + 1));
        let mut out = BufWriter::new(File::create(&path).unwrap());
        gguf_file::write(&mut out, &metadata, &chunk).unwrap();
        out.into_inner().unwrap().sync_all().unwrap();
        paths.push(path);
    }
    assert_eq!(paths.len(), usize::from(count), "too few tensors to split");
    paths
}
