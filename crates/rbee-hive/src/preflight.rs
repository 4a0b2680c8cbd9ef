//! Checks before a worker is spawned: enough RAM, the backend present, enough VRAM for GPU
//! backends, and a model file the worker can serve.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbee_api::Backend;
use rbee_api::hive::{ModelEntry, ModelSettings};
use rbee_api::worker::ModelInfo;
use sysinfo::{MemoryRefreshKind, RefreshKind, System};
use tokio::process::Command;

use crate::detect::detect_off_runtime;
use crate::error::HiveError;

#[derive(Debug, Clone)]
pub struct Preflight {
    /// The most RAM the hive may give to a model (the `--memory-limit-mb` setting).
    pub memory_limit_mb: Option<u64>,
    pub worker_bin: PathBuf,
    /// What the worker binary's version line says it was built for, read once.
    pub worker_backends: Arc<std::sync::OnceLock<Vec<Backend>>>,
}

fn mb(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

/// Memory the OS reports as available; `None` when it cannot be read.
pub fn available_ram_mb() -> Option<u64> {
    System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .ok()
    .map(|sys| sys.available_memory() / (1024 * 1024))
}

impl Preflight {
    /// The backends the worker binary was built for (`llm-worker-rbee --version` names
    /// them); empty when it cannot be run or does not say.
    pub fn worker_backends(&self) -> Vec<Backend> {
        let read = || {
            let out = std::process::Command::new(&self.worker_bin)
                .arg("--version")
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let list = text
                .split("(backends: ")
                .nth(1)?
                .split(')')
                .next()?
                .to_owned();
            Some(
                list.split(',')
                    .filter_map(|b| b.trim().parse().ok())
                    .collect(),
            )
        };
        self.worker_backends
            .get_or_init(|| read().unwrap_or_default())
            .clone()
    }

    /// RAM a model may use: what the OS reports available, capped by the memory limit.
    pub fn available_mb(&self) -> Option<u64> {
        match (available_ram_mb(), self.memory_limit_mb) {
            (Some(free), Some(limit)) => Some(free.min(limit)),
            (free, limit) => free.or(limit),
        }
    }

    pub async fn check(
        &self,
        model: &ModelEntry,
        backend: Backend,
        device: u32,
    ) -> Result<ModelInfo, HiveError> {
        // The file first, run as its settings say: what it needs follows from its header (and
        // a smaller context set for it needs less).
        let path = Path::new(&model.local_path);
        let info = self.run_check(path, false, Some(&model.settings)).await?;
        let required_mb = Self::required_mb(model.size_bytes, &info);
        // A CUDA load is held to the device's free VRAM below, not to the RAM (Metal's memory
        // is the RAM).
        let in_ram = backend != Backend::Cuda;
        let available_mb = in_ram.then(|| self.available_mb()).flatten();
        if available_mb.is_none() && in_ram {
            tracing::warn!("cannot read the available memory; skipping the RAM check");
        }
        if let Some(available_mb) = available_mb
            && required_mb > available_mb
        {
            return Err(HiveError::InsufficientRam {
                model_ref: model.reference.clone(),
                required_mb,
                available_mb,
            });
        }
        let found = detect_off_runtime().await;
        if !found.backends.contains(&backend) {
            let names: Vec<&str> = found.backends.iter().map(|b| b.as_str()).collect();
            return Err(HiveError::BackendUnavailable {
                backend,
                found: names.join(", "),
            });
        }
        let devices = found.devices.get(&backend).copied().unwrap_or(0);
        if device >= devices {
            return Err(HiveError::BackendUnavailable {
                backend,
                found: format!("{devices} {backend} device(s); device {device} does not exist"),
            });
        }
        if backend.is_gpu()
            && let Some(free_mb) = found
                .vram_free_mb
                .get(&backend)
                .and_then(|free| free.get(device as usize))
                .copied()
            && required_mb > free_mb
        {
            return Err(HiveError::VramExhausted {
                backend,
                device,
                required_mb,
                free_mb,
            });
        }
        Ok(info)
    }

    /// Memory a model needs: its weights plus the attention cache at its full context (the
    /// same rule before a download and before a spawn).
    pub fn required_mb(size_bytes: u64, info: &ModelInfo) -> u64 {
        mb(size_bytes + info.kv_bytes_per_token * info.context_length as u64)
    }

    /// Asks the worker binary to read the model's GGUF header, exactly as it will when it
    /// starts; the hive itself links no model code. With `header_only`, `path` holds only
    /// the start of the file.
    pub async fn check_file(&self, path: &Path, header_only: bool) -> Result<ModelInfo, HiveError> {
        self.run_check(path, header_only, None).await
    }

    /// [`Self::check_file`] of the whole model at `path` run as `settings` say: a template
    /// must compile, and what is set is reported as the model's.
    pub async fn check_with_settings(
        &self,
        path: &Path,
        settings: &ModelSettings,
    ) -> Result<ModelInfo, HiveError> {
        self.run_check(path, false, Some(settings)).await
    }

    async fn run_check(
        &self,
        path: &Path,
        header_only: bool,
        settings: Option<&ModelSettings>,
    ) -> Result<ModelInfo, HiveError> {
        let mut cmd = Command::new(&self.worker_bin);
        cmd.arg("--check");
        if header_only {
            cmd.arg("--header-only");
        }
        if let Some(settings) = settings {
            settings_to_worker(&mut cmd, settings);
        }
        let out = cmd
            .arg("--model")
            .arg(path)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                HiveError::io(
                    format!("cannot run the worker binary {}", self.worker_bin.display()),
                    e,
                )
            })?;
        if out.status.success() {
            return serde_json::from_slice(&out.stdout)
                .map_err(|e| HiveError::CheckReport(Arc::new(e)));
        }
        let reason = String::from_utf8_lossy(&out.stderr);
        let reason = reason
            .lines()
            .last()
            .unwrap_or("the worker rejected the file")
            .trim_start_matches("llm-worker-rbee: error: ");
        Err(HiveError::InvalidModel(reason.to_owned()))
    }
}

/// Gives a worker command (or its check) a model's settings.
pub fn settings_to_worker(cmd: &mut Command, settings: &ModelSettings) {
    if let Some(source) = &settings.chat_template {
        cmd.env(rbee_api::worker::CHAT_TEMPLATE_SOURCE_ENV, source);
    }
    if let Some(n) = settings.context_length {
        cmd.arg(format!("--context-length={n}"));
    }
}
