#!/usr/bin/python3
"""Convert a Hugging Face GPT-2 checkpoint (llmserve's embedded gpt2-brown-mini) to an F32 GGUF.

Our own converter, written with llama.cpp's gguf-py (GGUFWriter). It mirrors the key set and
tensor naming of llmserve's fixture tests/fixtures/gguf/gpt2-tiny-f32/model.gguf:

  * metadata: general.{architecture,type,name,quantization_version,file_type},
    gpt2.{block_count,context_length,embedding_length,feed_forward_length,
    attention.head_count,attention.layer_norm_epsilon},
    tokenizer.ggml.{model="gpt2",pre="gpt-2",tokens,token_type,merges,bos/eos/unknown_token_id}
  * tensors: token_embd, position_embd, output_norm(+bias), blk.N.{attn_norm(+bias),
    attn_qkv(+bias), attn_output(+bias), ffn_norm(+bias), ffn_up(+bias), ffn_down(+bias)}.
    HF Conv1D weights are [in, out]; GGUF matrices are stored [out, in] (numpy shape), so each
    Conv1D weight is transposed. c_attn's output columns are already q, then k, then v.
    Embeddings are tied: no output.weight.

Every weight is widened exactly from the stored dtype (f16 in this checkpoint) to f32.
The safetensors file is read directly (no torch / safetensors package needed).
Tokenizer: vocab.json + merges.txt; token types from tokenizer.json's added_tokens
(special -> CONTROL, otherwise NORMAL).

Usage: LLAMA_CPP_DIR=<llama.cpp checkout> /usr/bin/python3 scripts/gpt2_to_gguf.py [MODEL_DIR] [OUT.gguf]
Then e.g. `llama-quantize OUT.gguf OUT-Q4_K_M.gguf Q4_K_M` and
`build/llmserve perplexity --model OUT-Q4_K_M.gguf --file tests/data/brown-heldout.txt --context 256`
(docs/PERFORMANCE.md, "Perplexity of each GGUF type").
"""
import json
import os
import struct
import sys

import numpy as np

# gguf-py from a llama.cpp checkout: $LLAMA_CPP_DIR/gguf-py (only needed to run this script).
if os.environ.get("LLAMA_CPP_DIR"):
    sys.path.insert(0, os.path.join(os.environ["LLAMA_CPP_DIR"], "gguf-py"))
import gguf  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "models", "gpt2-brown-mini")
OUT = sys.argv[2] if len(sys.argv) > 2 else "brown-mini-f32.gguf"

ST_DTYPES = {"F16": np.float16, "F32": np.float32, "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        blob = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = blob[a:b]
        dt = info["dtype"]
        if dt == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt in ("F16", "F32"):
            arr = np.frombuffer(raw, dtype=np.dtype(ST_DTYPES[dt]).newbyteorder("<")).astype(np.float32)
        else:
            raise SystemExit(f"unsupported dtype {dt} for {name}")
        out[name] = arr.reshape(info["shape"])  # exact widening to f32
    return out, base


def load_tokenizer(model_dir, n_vocab):
    vocab = json.load(open(os.path.join(model_dir, "vocab.json"), encoding="utf-8"))
    rev = {i: s for s, i in vocab.items()}
    added = {}
    tj = os.path.join(model_dir, "tokenizer.json")
    if os.path.exists(tj):
        for a in json.load(open(tj, encoding="utf-8")).get("added_tokens", []):
            added[a["id"]] = a
            rev.setdefault(a["id"], a["content"])
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in rev:
            raise SystemExit(f"token id {i} missing from vocab")
        tokens.append(rev[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    merges = []
    with open(os.path.join(model_dir, "merges.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#version"):
                continue
            merges.append(line)
    return tokens, types, merges


def main():
    cfg = json.load(open(os.path.join(MODEL_DIR, "config.json")))
    assert cfg["model_type"] == "gpt2"
    assert not cfg.get("scale_attn_by_inverse_layer_idx") and not cfg.get("reorder_and_upcast_attn")
    assert cfg.get("activation_function", "gelu_new") == "gelu_new"
    n_embd, n_layer, n_head = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    n_ff = cfg.get("n_inner") or 4 * n_embd
    n_ctx = cfg["n_positions"]
    n_vocab = cfg["vocab_size"]
    eps = cfg["layer_norm_epsilon"]
    eos = cfg.get("eos_token_id", 50256)
    bos = cfg.get("bos_token_id", eos)

    t, _ = read_safetensors(os.path.join(MODEL_DIR, "model.safetensors"))
    t = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in t.items()}
    if "lm_head.weight" in t:
        assert np.array_equal(t["lm_head.weight"], t["wte.weight"]), "untied head not supported"

    w = gguf.GGUFWriter(OUT, "gpt2")
    w.add_type("model")
    w.add_name(os.path.basename(os.path.normpath(MODEL_DIR)))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokens, types, merges = load_tokenizer(MODEL_DIR, n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(eos)

    def add(name, arr):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        w.add_tensor(name, arr)

    for i in range(n_layer):
        h, p = f"h.{i}.", f"blk.{i}."
        add(p + "attn_qkv.bias", t[h + "attn.c_attn.bias"])
        add(p + "attn_qkv.weight", t[h + "attn.c_attn.weight"].T)     # [3E, E]
        add(p + "attn_output.bias", t[h + "attn.c_proj.bias"])
        add(p + "attn_output.weight", t[h + "attn.c_proj.weight"].T)  # [E, E]
        add(p + "attn_norm.bias", t[h + "ln_1.bias"])
        add(p + "attn_norm.weight", t[h + "ln_1.weight"])
        add(p + "ffn_norm.bias", t[h + "ln_2.bias"])
        add(p + "ffn_norm.weight", t[h + "ln_2.weight"])
        add(p + "ffn_up.bias", t[h + "mlp.c_fc.bias"])
        add(p + "ffn_up.weight", t[h + "mlp.c_fc.weight"].T)          # [F, E]
        add(p + "ffn_down.bias", t[h + "mlp.c_proj.bias"])
        add(p + "ffn_down.weight", t[h + "mlp.c_proj.weight"].T)      # [E, F]
    add("output_norm.bias", t["ln_f.bias"])
    add("output_norm.weight", t["ln_f.weight"])
    add("position_embd.weight", t["wpe.weight"])                      # [n_ctx, E]
    add("token_embd.weight", t["wte.weight"])                         # [V, E]

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
