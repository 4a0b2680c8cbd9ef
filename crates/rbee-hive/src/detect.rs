//! What compute this node has: CPU always; CUDA GPUs through `nvidia-smi` (device count and
//! free VRAM); Metal on macOS.

use std::collections::BTreeMap;
use std::process::Command;

use rbee_api::Backend;
use rbee_api::hive::Detected;

pub fn detect() -> Detected {
    let mut backends = vec![Backend::Cpu];
    let mut devices = BTreeMap::from([(Backend::Cpu, 1)]);
    let mut vram_free_mb = BTreeMap::new();
    if let Some(free) = nvidia_free_vram_mb() {
        backends.push(Backend::Cuda);
        devices.insert(Backend::Cuda, free.len() as u32);
        vram_free_mb.insert(Backend::Cuda, free);
    }
    if cfg!(target_os = "macos") {
        backends.push(Backend::Metal);
        devices.insert(Backend::Metal, 1);
    }
    Detected {
        backends,
        devices,
        vram_free_mb,
    }
}

/// [`detect`] on tokio's blocking pool: `nvidia-smi` takes up to seconds on a machine with
/// GPUs, and run inside a request handler it would hold one of the runtime's few threads
/// (two on a two-core node) for that long.
pub async fn detect_off_runtime() -> Detected {
    match tokio::task::spawn_blocking(detect).await {
        Ok(found) => found,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down; answer on this thread.
        Err(_) => detect(),
    }
}

/// Free memory (MB) of each NVIDIA GPU, in device order; `None` without a working
/// `nvidia-smi` or without GPUs.
fn nvidia_free_vram_mb() -> Option<Vec<u64>> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,memory.free",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut gpus: Vec<(u32, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (index, free) = line.split_once(',')?;
            Some((index.trim().parse().ok()?, free.trim().parse().ok()?))
        })
        .collect();
    gpus.sort_unstable();
    (!gpus.is_empty()).then(|| gpus.into_iter().map(|(_, free)| free).collect())
}
