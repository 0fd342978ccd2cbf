#!/usr/bin/python3
"""How far the CUDA backend's f16/bf16 arithmetic may move the Llama-family fixtures' logits.

Emulates, in numpy float32, what the CUDA backend computes with weights in their default format
(bf16 checkpoints stay bf16, everything else becomes f16): every matrix (embedding and head
included) rounded to that type, every GEMM input rounded to it, float32 everywhere else
(RMSNorm, RoPE, softmax, accumulation); optionally an f16 KV cache (keys and values rounded once
more). Prints, per model folder, the worst |logit - reference| / (1 + |reference|) and the worst
|logit - reference| over every case, first for the exact float32 forward pass (which checks this
emulation against the references) and then for the emulated GPU arithmetic.
cuda_parity_test.cpp's tolerances come from its output.

    /usr/bin/python3 tests/backend_cuda/gpu_rounding_estimate.py [tests/fixtures/models-llama]

Needs numpy (Debian python3-numpy). Not part of the test suite: it documents a bound.
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np


def bf16_round(x):
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000  # round to nearest even
    return bits.astype(np.uint32).view(np.float32)


def rounder(kind):
    if kind == "f16":
        return lambda x: x.astype(np.float16).astype(np.float32)
    if kind == "bf16":
        return bf16_round
    return lambda x: x


def read_safetensors(path):
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    body = raw[8 + length :]
    tensors, dtypes = {}, set()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        data = body[begin:end]
        dtype = info["dtype"]
        dtypes.add(dtype)
        if dtype == "F32":
            array = np.frombuffer(data, dtype=np.float32)
        elif dtype == "F16":
            array = np.frombuffer(data, dtype=np.float16).astype(np.float32)
        elif dtype == "BF16":
            array = (np.frombuffer(data, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype}")
        tensors[name] = array.reshape(info["shape"]).astype(np.float32)
    return tensors, dtypes


def read_weights(folder):
    index = folder / "model.safetensors.index.json"
    files = (
        sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
        if index.exists()
        else [folder / "model.safetensors"]
    )
    tensors, dtypes = {}, set()
    for f in files:
        t, d = read_safetensors(f)
        tensors.update(t)
        dtypes |= d
    return tensors, dtypes


def rope_inv_freq(config, head_dim):
    params = dict(config.get("rope_parameters") or {})
    if config.get("rope_scaling"):
        params.update(config["rope_scaling"])
    theta = params.get("rope_theta", config.get("rope_theta") or 10000.0)
    kind = params.get("rope_type", params.get("type", "default"))
    rotary_dim = int(head_dim * config.get("partial_rotary_factor", 1.0))
    inv_freq = 1.0 / theta ** (np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)
    if kind == "llama3":
        factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
        old = params.get("original_max_position_embeddings", config["max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        inv_freq = np.where(medium, smoothed, scaled)
    elif kind != "default":
        raise ValueError(f"rope type {kind} is not emulated")
    return inv_freq.astype(np.float32), rotary_dim


def sliding_windows(config, layers):
    window = config.get("sliding_window")
    if config["model_type"] == "mistral":
        return [window or 0] * layers
    if not config.get("use_sliding_window"):
        return [0] * layers
    types = config.get("layer_types") or [
        "sliding_attention" if i >= config.get("max_window_layers", layers) else "full_attention"
        for i in range(layers)
    ]
    return [window if t == "sliding_attention" else 0 for t in types]


def rms_norm(x, weight, eps):
    inverse = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))
    return (weight * (x * inverse)).astype(np.float32)


def rotate(x, positions, inv_freq, rotary_dim):
    half = rotary_dim // 2
    angles = positions.astype(np.float32)[:, None] * inv_freq[None, :]  # float32, as the op
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    first, second = x[..., :half].copy(), x[..., half:rotary_dim].copy()
    x[..., :half] = first * cos - second * sin
    x[..., half:rotary_dim] = second * cos + first * sin
    return x


def forward(folder, ids, weight_kind, kv_kind):
    config = json.loads((folder / "config.json").read_text())
    w, _ = read_weights(folder)
    round_w, round_kv = rounder(weight_kind), rounder(kv_kind)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // heads
    eps = config["rms_norm_eps"]
    inv_freq, rotary_dim = rope_inv_freq(config, head_dim)
    windows = sliding_windows(config, layers)

    def linear(x, prefix):  # the GPU rounds the input and the weight, accumulates in float32
        y = round_w(x) @ round_w(w[prefix + ".weight"]).T
        return y + w[prefix + ".bias"] if prefix + ".bias" in w else y

    T = len(ids)
    positions = np.arange(T)
    x = round_w(w["model.embed_tokens.weight"])[ids]
    for layer in range(layers):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").reshape(T, heads, head_dim)
        k = linear(h, p + "self_attn.k_proj").reshape(T, kv_heads, head_dim)
        v = linear(h, p + "self_attn.v_proj").reshape(T, kv_heads, head_dim)
        if p + "self_attn.q_norm.weight" in w:
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q, k = rotate(q, positions, inv_freq, rotary_dim), rotate(k, positions, inv_freq, rotary_dim)
        k, v = round_kv(k), round_kv(v)
        out = np.empty((T, heads, head_dim), dtype=np.float32)
        for head in range(heads):
            kv = head // (heads // kv_heads)
            scores = (q[:, head] @ k[:, kv].T) * np.float32(1.0 / math.sqrt(head_dim))
            keys = np.arange(T)[None, :]
            allowed = keys <= positions[:, None]
            if windows[layer]:
                allowed &= keys > positions[:, None] - windows[layer]
            scores = np.where(allowed, scores, -np.inf)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            out[:, head] = (weights / weights.sum(axis=1, keepdims=True)) @ v[:, kv]
        x = x + linear(out.reshape(T, heads * head_dim), p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = linear(h, p + "mlp.gate_proj"), linear(h, p + "mlp.up_proj")
        x = x + linear(gate / (1.0 + np.exp(-gate)) * up, p + "mlp.down_proj")
    h = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return round_w(h) @ round_w(head).T


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/models-llama")
    print("folder: worst |logit - ref| / (1 + |ref|), worst |logit - ref|: float32 | GPU weights, "
          "f32 KV | GPU weights, f16 KV")
    for folder in sorted(p for p in root.iterdir() if (p / "reference.json").exists()):
        reference = json.loads((folder / "reference.json").read_text())
        _, dtypes = read_weights(folder)
        kind = "bf16" if dtypes == {"BF16"} else "f16"
        worst = {}
        for mode in [("f32", "f32"), (kind, "f32"), (kind, "f16")]:
            for case in reference["cases"]:
                ids = np.array(case["input_ids"])
                ref = np.fromfile(folder / case["logits_file"], dtype="<f4").reshape(
                    case["logits_shape"]
                )
                got = forward(folder, ids, *mode)
                error = np.abs(got - ref)
                excess, absolute = float(np.max(error / (1.0 + np.abs(ref)))), float(error.max())
                before = worst.get(mode, (0.0, 0.0))
                worst[mode] = (max(before[0], excess), max(before[1], absolute))
        print(f"{folder.name} ({kind} weights): "
              + " | ".join(f"{e:.2e}, {a:.2e}" for e, a in worst.values()))


if __name__ == "__main__":
    main()
