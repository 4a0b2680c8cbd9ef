//! Compute backends a worker can run on, as named in flags, registries and requests.

use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Cpu, Backend::Cuda, Backend::Metal];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        }
    }

    pub fn is_gpu(self) -> bool {
        !matches!(self, Self::Cpu)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown backend `{s}` (expected cpu, cuda or metal)"))
    }
}

/// The backend a request asks for: one by name, or `auto`, the node's best — cuda, then
/// metal, then cpu — from what its hive detected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BackendChoice {
    #[default]
    Auto,
    Exactly(Backend),
}

impl BackendChoice {
    /// The backend to use on a node that has `detected`.
    pub fn resolve(self, detected: &[Backend]) -> Backend {
        match self {
            Self::Exactly(backend) => backend,
            Self::Auto => [Backend::Cuda, Backend::Metal]
                .into_iter()
                .find(|b| detected.contains(b))
                .unwrap_or(Backend::Cpu),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Exactly(backend) => backend.fmt(f),
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        s.parse()
            .map(Self::Exactly)
            .map_err(|_| format!("unknown backend `{s}` (expected auto, cpu, cuda or metal)"))
    }
}

impl TryFrom<String> for BackendChoice {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<BackendChoice> for String {
    fn from(choice: BackendChoice) -> Self {
        choice.to_string()
    }
}

impl From<Backend> for BackendChoice {
    fn from(backend: Backend) -> Self {
        Self::Exactly(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_cuda_then_metal_then_cpu() {
        let auto = BackendChoice::Auto;
        assert_eq!(auto.resolve(&[Backend::Cpu]), Backend::Cpu);
        assert_eq!(
            auto.resolve(&[Backend::Cpu, Backend::Metal]),
            Backend::Metal
        );
        assert_eq!(
            auto.resolve(&[Backend::Cpu, Backend::Metal, Backend::Cuda]),
            Backend::Cuda
        );
        assert_eq!(
            BackendChoice::Exactly(Backend::Cpu).resolve(&[Backend::Cuda]),
            Backend::Cpu
        );
        let json = serde_json::to_string(&BackendChoice::Auto).unwrap();
        assert_eq!(json, "\"auto\"");
        let cuda: BackendChoice = serde_json::from_str("\"CUDA\"").unwrap();
        assert_eq!(cuda, BackendChoice::Exactly(Backend::Cuda));
        assert!(serde_json::from_str::<BackendChoice>("\"vulkan\"").is_err());
    }

    #[test]
    fn parses_names_case_insensitively_and_rejects_others() {
        assert_eq!("CUDA".parse::<Backend>(), Ok(Backend::Cuda));
        assert_eq!(Backend::Metal.to_string(), "metal");
        assert!("vulkan".parse::<Backend>().unwrap_err().contains("vulkan"));
    }
}
