//! `rbee-requantize <in.gguf> <out.gguf> <FORMAT>`: writes a GGUF model in another
//! quantization (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K), for tests and benchmarks.
//! Tensors whose rows do not fit the format's block fall back as llama.cpp's quantizer does.

use std::path::Path;
use std::process::ExitCode;

use candle_core::quantized::GgmlDType;

fn format(name: &str) -> Option<GgmlDType> {
    Some(match name.to_ascii_uppercase().as_str() {
        "Q4_0" => GgmlDType::Q4_0,
        "Q4_1" => GgmlDType::Q4_1,
        "Q5_0" => GgmlDType::Q5_0,
        "Q5_1" => GgmlDType::Q5_1,
        "Q8_0" => GgmlDType::Q8_0,
        "Q4_K" => GgmlDType::Q4K,
        "Q5_K" => GgmlDType::Q5K,
        "Q6_K" => GgmlDType::Q6K,
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst, name] = &args[..] else {
        eprintln!(
            "usage: rbee-requantize <in.gguf> <out.gguf> <Q4_0|Q4_1|Q5_0|Q5_1|Q8_0|Q4_K|Q5_K|Q6_K>"
        );
        return ExitCode::FAILURE;
    };
    let Some(target) = format(name) else {
        eprintln!(
            "rbee-requantize: unknown format {name} (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)"
        );
        return ExitCode::FAILURE;
    };
    match llm_worker_rbee::requantize::requantize(Path::new(src), Path::new(dst), target) {
        Ok(report) => {
            let formats: Vec<String> = report
                .tensors_by_format
                .iter()
                .map(|(f, n)| format!("{n} {f}"))
                .collect();
            println!("wrote {dst}: {} tensors", formats.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rbee-requantize: {e}");
            ExitCode::FAILURE
        }
    }
}
