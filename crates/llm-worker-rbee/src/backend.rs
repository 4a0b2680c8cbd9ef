//! Picking the Candle device for a backend. GPU backends exist only in binaries built with
//! their Cargo feature; without it the worker refuses them with the rebuild command.

use candle_core::Device;
use rbee_api::Backend;

/// Why a backend's device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "this llm-worker-rbee was built without {0} support; rebuild with `cargo build --release -p llm-worker-rbee --features {0}` or use --backend cpu"
    )]
    NotBuilt(&'static str),
    #[error("{backend} device {ordinal} is not usable")]
    Unusable {
        backend: Backend,
        ordinal: u32,
        #[source]
        source: candle_core::Error,
    },
}

pub fn device(backend: Backend, ordinal: u32) -> Result<Device, DeviceError> {
    match backend {
        Backend::Cpu => Ok(Device::Cpu),
        Backend::Cuda => cuda(ordinal),
        Backend::Metal => metal(ordinal),
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: u32) -> Result<Device, DeviceError> {
    Device::new_cuda(ordinal as usize).map_err(|source| DeviceError::Unusable {
        backend: Backend::Cuda,
        ordinal,
        source,
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: u32) -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt("cuda"))
}

#[cfg(feature = "metal")]
fn metal(ordinal: u32) -> Result<Device, DeviceError> {
    Device::new_metal(ordinal as usize).map_err(|source| DeviceError::Unusable {
        backend: Backend::Metal,
        ordinal,
        source,
    })
}

#[cfg(not(feature = "metal"))]
fn metal(_ordinal: u32) -> Result<Device, DeviceError> {
    Err(DeviceError::NotBuilt("metal"))
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
        let err = device(Backend::Cuda, 0).unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
