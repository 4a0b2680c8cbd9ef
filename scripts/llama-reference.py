#!/usr/bin/env python3
"""llama.cpp as the reference rbee's worker is checked against (run it with the interpreter
scripts/llama-env.sh prints).

    llama-reference.py run MODEL < request.json > answer.json
    llama-reference.py quantize IN OUT FTYPE      # llama.cpp's own quantizer, e.g. Q4_K_M

`run` reads {"strings": [...], "prompts": [...], "tokens": N} and answers
{"strings": [[ids]...], "prompts": [{"ids": [...], "logits": [...], "greedy": [...]}...]}:
each string tokenized with special tokens parsed and BOS added as the model asks; each
prompt's ids, the logits at its last position, and its greedy continuation of N tokens
(shorter when an end-of-generation token is chosen, which is included).

Numerics are made reproducible: fixed threads, the whole prompt in one batch, the default
F16 KV cache, no flash attention.
"""
import ctypes, json, sys

import llama_cpp
import numpy as np

FTYPES = {"F16": 1, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32}


def logits_now(llm):
    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy()


def run(path, request):
    llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_batch=2048, n_ubatch=2048, n_threads=2,
                          n_threads_batch=2, flash_attn=False, seed=0, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    tokenize = lambda text: llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    answer = {"strings": [tokenize(s) for s in request["strings"]], "prompts": []}
    for prompt in request["prompts"]:
        ids = tokenize(prompt)
        llm.reset()
        llm.eval(ids)
        logits = logits_now(llm)
        first, greedy = logits, []
        while len(greedy) < request["tokens"]:
            token = int(np.argmax(logits))
            greedy.append(token)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            llm.eval([token])
            logits = logits_now(llm)
        answer["prompts"].append({"ids": ids, "logits": [float(v) for v in first], "greedy": greedy})
    return answer


def quantize(src, dst, ftype):
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.allow_requantize = True
    params.nthread = 2
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        sys.exit(f"llama_model_quantize failed for {src} -> {ftype}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"] and len(sys.argv) == 3:
        json.dump(run(sys.argv[2], json.load(sys.stdin)), sys.stdout)
    elif sys.argv[1:2] == ["quantize"] and len(sys.argv) == 5:
        quantize(*sys.argv[2:5])
    else:
        sys.exit(__doc__)
