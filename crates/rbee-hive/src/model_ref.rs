//! Choosing the GGUF file of a Hugging Face repository for a reference.

pub use rbee_api::model_ref::{DEFAULT_QUANT, ModelRef, quant_of_file};
use rbee_api::split::ShardName;

/// Why no file of a repository was chosen; the message lists the choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoFileChosen(String);

/// Picks the GGUF file for `selector` among `files`: a file named exactly, else the file of
/// that quantization, else (no selector) the `Q4_K_M` file, else the only GGUF file;
/// otherwise an error listing the choices. A model split into shards counts as its first
/// shard (naming any shard chooses it).
pub fn choose_file(files: &[String], selector: Option<&str>) -> Result<String, NoFileChosen> {
    let first_shard = |f: &String| ShardName::parse(f).is_none_or(|s| s.number == 1);
    let ggufs: Vec<&String> = (files.iter())
        .filter(|f| f.ends_with(".gguf") && first_shard(f))
        .collect();
    let named_shard = selector
        .and_then(|sel| {
            files
                .iter()
                .find(|f| f.as_str() == sel || f.rsplit('/').next() == Some(sel))
        })
        .and_then(|f| ShardName::parse(f))
        .map(|s| s.sibling(1));
    let selector = match &named_shard {
        Some(first) => Some(first.as_str()),
        None => selector,
    };
    if ggufs.is_empty() {
        return Err(NoFileChosen("the repository holds no GGUF file".to_owned()));
    }
    let choices = || {
        ggufs
            .iter()
            .map(|f| match quant_of_file(f) {
                Some(q) => format!("{f} (:{q})"),
                None => (*f).clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let by_quant = |q: &str| -> Vec<&String> {
        ggufs
            .iter()
            .copied()
            .filter(|f| quant_of_file(f).is_some_and(|fq| fq.eq_ignore_ascii_case(q)))
            .collect()
    };
    match selector {
        Some(sel) => {
            if let Some(f) = ggufs
                .iter()
                .find(|f| f.as_str() == sel || f.rsplit('/').next() == Some(sel))
            {
                return Ok((*f).clone());
            }
            match by_quant(sel).as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(NoFileChosen(format!(
                    "no GGUF file matches `{sel}`; choose one of: {}",
                    choices()
                ))),
                many => Err(NoFileChosen(format!(
                    "`{sel}` matches several files ({}); name the file instead",
                    many.iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
        None => {
            if let [one] = by_quant(DEFAULT_QUANT).as_slice() {
                return Ok((*one).clone());
            }
            if let [only] = ggufs.as_slice() {
                return Ok((*only).clone());
            }
            Err(NoFileChosen(format!(
                "the repository holds several GGUF files and none is {DEFAULT_QUANT}; add :<QUANT> to the reference, one of: {}",
                choices()
            )))
        }
    }
}

/// Every file of the model whose first (or only) file in the repository is `file`; an error
/// naming a shard the repository lacks.
pub fn files_of_model(files: &[String], file: &str) -> Result<Vec<String>, NoFileChosen> {
    let Some(shard) = ShardName::parse(file) else {
        return Ok(vec![file.to_owned()]);
    };
    let all = shard.all();
    match all.iter().find(|f| !files.contains(f)) {
        Some(missing) => Err(NoFileChosen(format!(
            "{file} is the first of {} shards, but the repository has no {missing}",
            shard.count
        ))),
        None => Ok(all),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_choice_follows_the_reference_rules() {
        let files: Vec<String> = ["README.md", "m.Q4_K_M.gguf", "m.Q8_0.gguf"]
            .map(String::from)
            .to_vec();
        assert_eq!(choose_file(&files, None).unwrap(), "m.Q4_K_M.gguf");
        assert_eq!(choose_file(&files, Some("Q8_0")).unwrap(), "m.Q8_0.gguf");
        assert_eq!(choose_file(&files, Some("q8_0")).unwrap(), "m.Q8_0.gguf");
        assert_eq!(
            choose_file(&files, Some("m.Q8_0.gguf")).unwrap(),
            "m.Q8_0.gguf"
        );
        let err = choose_file(&files, Some("Q2_K")).unwrap_err().to_string();
        assert!(err.contains("m.Q8_0.gguf (:Q8_0)"), "{err}");

        let only: Vec<String> = ["m.Q4_1.gguf"].map(String::from).to_vec();
        assert_eq!(choose_file(&only, None).unwrap(), "m.Q4_1.gguf");
        let two: Vec<String> = ["m.Q4_1.gguf", "m.Q8_0.gguf"].map(String::from).to_vec();
        let err = choose_file(&two, None).unwrap_err().to_string();
        assert!(
            err.contains("m.Q4_1.gguf") && err.contains("m.Q8_0.gguf"),
            "{err}"
        );
        assert!(choose_file(&["a.bin".to_owned()], None).is_err());
    }

    #[test]
    fn a_split_model_is_chosen_as_its_first_shard_with_all_its_files() {
        let files: Vec<String> = [
            "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf",
            "Q4_K_M/m-Q4_K_M-00002-of-00002.gguf",
            "m.Q8_0.gguf",
        ]
        .map(String::from)
        .to_vec();
        let first = "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf";
        assert_eq!(choose_file(&files, None).unwrap(), first);
        assert_eq!(choose_file(&files, Some("Q4_K_M")).unwrap(), first);
        assert_eq!(
            choose_file(&files, Some("m-Q4_K_M-00002-of-00002.gguf")).unwrap(),
            first
        );
        assert_eq!(
            files_of_model(&files, first).unwrap(),
            &files[..2],
            "both shards, in order"
        );
        assert_eq!(
            files_of_model(&files, "m.Q8_0.gguf").unwrap(),
            ["m.Q8_0.gguf"]
        );
        let err = files_of_model(&files[..1], first).unwrap_err().to_string();
        assert!(
            err.contains("no Q4_K_M/m-Q4_K_M-00002-of-00002.gguf"),
            "{err}"
        );
    }
}
