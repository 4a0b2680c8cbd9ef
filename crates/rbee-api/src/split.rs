//! Split GGUF models: one model stored as `<prefix>-00001-of-00003.gguf`,
//! `<prefix>-00002-of-00003.gguf`, … — llama.cpp's `gguf-split` naming, which large models on
//! the Hugging Face Hub use. The first shard holds the metadata; every shard holds some of the
//! tensors. rbee refers to such a model by its first shard everywhere (catalog, worker
//! `--model`), as llama.cpp does.

use std::path::{Path, PathBuf};

/// The parts of a shard's file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardName<'a> {
    /// Everything before `-NNNNN-of-MMMMM.gguf` (a folder too, when the name has one).
    pub prefix: &'a str,
    /// 1-based.
    pub number: u32,
    pub count: u32,
}

impl<'a> ShardName<'a> {
    /// `name` as a shard's name, if it is one (`m-00002-of-00003.gguf`).
    pub fn parse(name: &'a str) -> Option<Self> {
        let stem = name.strip_suffix(".gguf")?;
        let (rest, count) = stem.rsplit_once("-of-")?;
        let (prefix, number) = rest.rsplit_once('-')?;
        let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(number) || !digits(count) {
            return None;
        }
        let (number, count) = (number.parse().ok()?, count.parse().ok()?);
        (1..=count).contains(&number).then_some(Self {
            prefix,
            number,
            count,
        })
    }

    /// The name of shard `number` of the same model.
    pub fn sibling(&self, number: u32) -> String {
        format!("{}-{number:05}-of-{:05}.gguf", self.prefix, self.count)
    }

    /// The names of every shard, the first first.
    pub fn all(&self) -> Vec<String> {
        (1..=self.count).map(|n| self.sibling(n)).collect()
    }
}

/// Every file of the model whose first (or only) file is `path`, in shard order.
pub fn model_files(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str());
    match name.and_then(ShardName::parse) {
        Some(shard) if shard.number == 1 => (shard.all().into_iter())
            .map(|n| path.with_file_name(n))
            .collect(),
        _ => vec![path.to_owned()],
    }
}

/// The bytes the model at `path` takes on disk, all shards together; `None` when a file is
/// missing.
pub fn model_size_on_disk(path: &Path) -> Option<u64> {
    model_files(path)
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_are_recognised_and_others_are_not() {
        let shard = ShardName::parse("Q4_K_M/m-Q4_K_M-00002-of-00003.gguf").unwrap();
        assert_eq!(
            (shard.prefix, shard.number, shard.count),
            ("Q4_K_M/m-Q4_K_M", 2, 3)
        );
        assert_eq!(
            shard.all(),
            [
                "Q4_K_M/m-Q4_K_M-00001-of-00003.gguf",
                "Q4_K_M/m-Q4_K_M-00002-of-00003.gguf",
                "Q4_K_M/m-Q4_K_M-00003-of-00003.gguf"
            ]
        );
        for not in [
            "m.Q4_K_M.gguf",
            "m-1-of-3.gguf",
            "m-00004-of-00003.gguf",
            "m-00000-of-00003.gguf",
            "m-00001-of-00003.bin",
        ] {
            assert_eq!(ShardName::parse(not), None, "{not}");
        }
    }

    #[test]
    fn a_split_model_is_its_shards_and_a_whole_one_its_file() {
        let dir = std::env::temp_dir().join(format!("rbee-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = dir.join("m-00001-of-00002.gguf");
        std::fs::write(&first, b"abc").unwrap();
        assert_eq!(model_size_on_disk(&first), None, "shard 2 is missing");
        std::fs::write(dir.join("m-00002-of-00002.gguf"), b"de").unwrap();
        assert_eq!(model_size_on_disk(&first), Some(5));
        assert_eq!(
            model_files(&dir.join("whole.gguf")),
            [dir.join("whole.gguf")]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
