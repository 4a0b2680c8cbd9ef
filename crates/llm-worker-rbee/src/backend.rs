//! Picking the Candle device for a backend. GPU backends exist only in binaries built with
//! their Cargo feature; without it the worker refuses them with the rebuild command.

use candle_core::Device;
use rbee_api::Backend;

pub fn device(backend: Backend, ordinal: u32) -> Result<Device, String> {
    match backend {
        Backend::Cpu => Ok(Device::Cpu),
        Backend::Cuda => cuda(ordinal),
        Backend::Metal => metal(ordinal),
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: u32) -> Result<Device, String> {
    Device::new_cuda(ordinal as usize)
        .map_err(|e| format!("CUDA device {ordinal} is not usable: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: u32) -> Result<Device, String> {
    Err(not_built("cuda"))
}

#[cfg(feature = "metal")]
fn metal(ordinal: u32) -> Result<Device, String> {
    Device::new_metal(ordinal as usize)
        .map_err(|e| format!("Metal device {ordinal} is not usable: {e}"))
}

#[cfg(not(feature = "metal"))]
fn metal(_ordinal: u32) -> Result<Device, String> {
    Err(not_built("metal"))
}

#[cfg(any(not(feature = "cuda"), not(feature = "metal")))]
fn not_built(feature: &str) -> String {
    format!(
        "this llm-worker-rbee was built without {feature} support; rebuild with `cargo build --release -p llm-worker-rbee --features {feature}` or use --backend cpu"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert!(device(Backend::Cpu, 0).unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_the_rebuild() {
        let err = device(Backend::Cuda, 0).unwrap_err();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
