use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::cpu::format::Operand;

const FORMATS: [Format; 11] = [
    Format::Q4_0,
    Format::Q4_1,
    Format::Q5_0,
    Format::Q5_1,
    Format::Q8_0,
    Format::Q4K,
    Format::Q5K,
    Format::Q6K,
    Format::F32,
    Format::F16,
    Format::BF16,
];

/// Random blocks of `format`: random bytes for the quantized values and scales in a
/// realistic range (f16 scales of small magnitude); floats of that magnitude for the float
/// formats.
fn random_row(rng: &mut StdRng, format: Format, cols: usize) -> Vec<u8> {
    let mut row = vec![0u8; format.row_bytes(cols)];
    let small = |rng: &mut StdRng| rng.random_range(-0.05f32..0.05);
    match format {
        Format::F32 => {
            for v in row.chunks_exact_mut(4) {
                v.copy_from_slice(&small(rng).to_le_bytes());
            }
            return row;
        }
        Format::F16 => {
            for v in row.chunks_exact_mut(2) {
                v.copy_from_slice(&half::f16::from_f32(small(rng)).to_le_bytes());
            }
            return row;
        }
        Format::BF16 => {
            for v in row.chunks_exact_mut(2) {
                v.copy_from_slice(&half::bf16::from_f32(small(rng)).to_le_bytes());
            }
            return row;
        }
        _ => rng.fill(&mut row[..]),
    }
    for blk in row.chunks_exact_mut(format.block_bytes()) {
        let scale = |rng: &mut StdRng| half::f16::from_f32(small(rng));
        // Q6_K keeps its scale last; the others first, Q4_1/Q4_K/Q5_K a minimum after it.
        let at = if format == Format::Q6K { 208 } else { 0 };
        blk[at..at + 2].copy_from_slice(&scale(rng).to_le_bytes());
        if matches!(
            format,
            Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K
        ) {
            blk[2..4].copy_from_slice(&scale(rng).to_le_bytes());
        }
    }
    row
}

#[test]
fn rows_rearranged_for_the_kernels_dequantize_like_candle() {
    use candle_core::Device;
    use candle_core::quantized::{GgmlDType, ggml_file::qtensor_from_ggml};
    let mut rng = StdRng::seed_from_u64(11);
    for (format, dtype) in [
        (Format::Q4_0, GgmlDType::Q4_0),
        (Format::Q4_1, GgmlDType::Q4_1),
        (Format::Q5_0, GgmlDType::Q5_0),
        (Format::Q5_1, GgmlDType::Q5_1),
        (Format::Q8_0, GgmlDType::Q8_0),
        (Format::Q4K, GgmlDType::Q4K),
        (Format::Q5K, GgmlDType::Q5K),
        (Format::Q6K, GgmlDType::Q6K),
        (Format::F32, GgmlDType::F32),
        (Format::F16, GgmlDType::F16),
        (Format::BF16, GgmlDType::BF16),
    ] {
        let file_row = random_row(&mut rng, format, 512);
        let candle: Vec<f32> = qtensor_from_ggml(dtype, &file_row, vec![512], &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut ours = vec![0f32; 512];
        format.dequantize(&format.to_planar(&file_row), &mut ours);
        assert_eq!(ours, candle, "{format:?}");
    }
}

fn random_activations(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-3.0..3.0)).collect()
}

/// The straightforward reference: dequantize both sides and sum f32 products.
fn reference(format: Format, row: &[u8], x: &Quantized, token: usize, cols: usize) -> f32 {
    let mut w = vec![0f32; cols];
    format.dequantize(row, &mut w);
    let a: Vec<f32> = match format.operand() {
        Operand::Q8K => {
            let k = x.q8k(token).unwrap();
            k.qs.iter()
                .enumerate()
                .map(|(i, &q)| q as f32 * k.d[i / 256])
                .collect()
        }
        Operand::F32 => x.floats(token).unwrap().to_vec(),
        Operand::Q8 => {
            let q = x.q8(token);
            q.qs.iter()
                .enumerate()
                .map(|(i, &v)| v as f32 * q.d[i / 32])
                .collect()
        }
    };
    w.iter().zip(&a).map(|(w, a)| w * a).sum()
}

fn check(kernels: Kernels) {
    let mut rng = StdRng::seed_from_u64(7);
    for format in FORMATS {
        // 576 = 18 blocks of 32: eight at a time leaves a tail.
        for cols in [256usize, 576, 1536] {
            if !cols.is_multiple_of(format.block_len()) {
                continue;
            }
            let x = random_activations(&mut rng, 4 * cols);
            let q = Quantized::new(&x, cols, &[format.operand()]);
            for _ in 0..20 {
                let row = format.to_planar(&random_row(&mut rng, format, cols));
                let tokens = [2, 0, 3, 1];
                let x4 = kernels.dot_x4(format, &row, &q.quad(tokens));
                for (token, &four) in tokens.into_iter().zip(&x4) {
                    let want = reference(format, &row, &q, token, cols);
                    let got = kernels.dot(format, &row, &q, token);
                    assert!(
                        (four - got).abs() <= 1e-4 * got.abs().max(1.0),
                        "{} {format:?}: four at once {four}, one at a time {got}",
                        kernels.name(),
                    );
                    let scale: f32 = {
                        let mut w = vec![0f32; cols];
                        format.dequantize(&row, &mut w);
                        w.iter().map(|v| v.abs()).sum::<f32>() * 3.0
                    };
                    assert!(
                        (got - want).abs() <= 1e-5 * scale + 1e-4,
                        "{} {format:?} cols {cols}: kernel {got}, reference {want}",
                        kernels.name()
                    );
                }
            }
        }
    }
}

#[test]
fn every_supported_instruction_set_matches_the_f32_reference_on_random_blocks() {
    for isa in Kernels::supported() {
        check(Kernels::for_isa(isa).unwrap());
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_best_instruction_set_the_cpu_has_is_picked() {
    use std::arch::is_x86_feature_detected as has;
    let avx2 = has!("avx2") && has!("fma") && has!("f16c");
    let avx512_vnni = has!("avx512vnni") && has!("avx512vl");
    let want = match (avx2, has!("avxvnni"), avx512_vnni) {
        (true, true, _) => Isa::AvxVnni,
        (true, false, true) => Isa::Avx512Vnni,
        (true, false, false) => Isa::Avx2,
        _ => Isa::Portable,
    };
    assert_eq!(Kernels::detect().isa(), want);
    assert_eq!(Kernels::for_isa(want).map(|k| k.isa()), Some(want));
}

#[test]
fn activation_blocks_round_like_candle() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let mut rng = StdRng::seed_from_u64(3);
    let x = random_activations(&mut rng, 512);
    let ours = Quantized::new(&x, 512, &[Operand::Q8K]);
    let candle = |dtype| -> Vec<f32> {
        let t = Tensor::from_vec(x.clone(), (1, 512), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        q.dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let q8: Vec<f32> = (0..512)
        .map(|i| ours.q8.qs[i] as f32 * ours.q8.d[i / 32])
        .collect();
    assert_eq!(q8, candle(GgmlDType::Q8_0));
    let k = ours.q8k.as_ref().unwrap();
    let q8k: Vec<f32> = (0..512).map(|i| k.qs[i] as f32 * k.d[i / 256]).collect();
    assert_eq!(q8k, candle(GgmlDType::Q8K));
}
