use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::cpu::format::{Operand, TILE_ROWS};
use crate::cpu::team::Team;

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

/// Eight random rows of `format` as the file stores them, and as the kernels read them.
fn random_run(rng: &mut StdRng, format: Format, cols: usize) -> (Vec<u8>, Vec<u8>) {
    let file: Vec<u8> = (0..TILE_ROWS)
        .flat_map(|_| random_row(rng, format, cols))
        .collect();
    let mut run = vec![0u8; file.len()];
    format.write_tile(&file, &mut run);
    (file, run)
}

/// Row `lane` of a run as the kernels read it, dequantized.
fn dequantize(format: Format, run: &[u8], lane: usize, cols: usize) -> Vec<f32> {
    let mut w = vec![0f32; cols];
    if format.is_tiled() {
        format.dequantize_tile_row(run, lane, &mut w);
    } else {
        let n = format.row_bytes(cols);
        format.dequantize(&run[lane * n..(lane + 1) * n], &mut w);
    }
    w
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
        let (file, run) = random_run(&mut rng, format, 512);
        let n = format.row_bytes(512);
        for lane in 0..TILE_ROWS {
            let row = &file[lane * n..(lane + 1) * n];
            let candle: Vec<f32> = qtensor_from_ggml(dtype, row, vec![512], &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(dequantize(format, &run, lane, 512), candle, "{format:?}");
        }
    }
}

fn random_activations(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-3.0..3.0)).collect()
}

/// The straightforward reference: dequantize both sides and sum f32 products.
fn reference(w: &[f32], format: Format, x: &Quantized, token: usize) -> f32 {
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
        for cols in [256usize, 576, 1536] {
            if !cols.is_multiple_of(format.block_len()) {
                continue;
            }
            let x = random_activations(&mut rng, 4 * cols);
            let q = Quantized::new(&Team::new(1).unwrap(), &x, cols, &[format.operand()]);
            for _ in 0..5 {
                let (_, run) = random_run(&mut rng, format, cols);
                let tokens = [2, 0, 3, 1];
                let four = kernels.run(format, &run, &q, tokens);
                for (t, &token) in tokens.iter().enumerate() {
                    let [one] = kernels.run(format, &run, &q, [token]);
                    for lane in 0..TILE_ROWS {
                        let w = dequantize(format, &run, lane, cols);
                        let want = reference(&w, format, &q, token);
                        let (got, together) = (one[lane], four[t][lane]);
                        // The same products in the same order, however many tokens.
                        assert_eq!(
                            together.to_bits(),
                            got.to_bits(),
                            "{} {format:?}: four at once {together}, one at a time {got}",
                            kernels.name(),
                        );
                        let scale = w.iter().map(|v| v.abs()).sum::<f32>() * 3.0;
                        assert!(
                            (got - want).abs() <= 1e-5 * scale + 1e-4,
                            "{} {format:?} cols {cols} row {lane}: kernel {got}, reference {want}",
                            kernels.name()
                        );
                    }
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
    let ours = Quantized::new(&Team::new(1).unwrap(), &x, 512, &[Operand::Q8K]);
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
