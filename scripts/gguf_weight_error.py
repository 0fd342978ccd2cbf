#!/usr/bin/python3
"""Relative RMS weight error of quantized GGUF files against their F32 source, tensor by tensor.

For every tensor that is quantized in each of the given files: sqrt(mean((dequantized - f32)^2)) / sqrt(mean(f32^2)),
dequantized by gguf-py (from a llama.cpp checkout). Used in docs/PERFORMANCE.md to compare Q4_0 with Q4_K at the same
4.5 bits per weight on the embedded model's matrices.

Usage: LLAMA_CPP_DIR=<llama.cpp checkout> /usr/bin/python3 scripts/gguf_weight_error.py F32.gguf A.gguf [B.gguf ...]
"""
import os
import sys

import numpy as np

if os.environ.get("LLAMA_CPP_DIR"):
    sys.path.insert(0, os.path.join(os.environ["LLAMA_CPP_DIR"], "gguf-py"))
import gguf  # noqa: E402
from gguf.quants import dequantize  # noqa: E402


def tensors(path):
    reader = gguf.GGUFReader(path)
    return {t.name: (t.tensor_type.name, dequantize(t.data, t.tensor_type).reshape(-1)) for t in reader.tensors}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    source = tensors(sys.argv[1])
    files = [(os.path.basename(p), tensors(p)) for p in sys.argv[2:]]
    float_types = {"F32", "F16", "BF16"}
    for name in sorted(source):
        if any(name not in t or t[name][0] in float_types for _, t in files):
            continue
        exact = source[name][1].astype(np.float64)
        scale = np.sqrt(np.mean(exact ** 2))
        cells = []
        for label, t in files:
            error = np.sqrt(np.mean((t[name][1] - exact) ** 2)) / scale
            cells.append(f"{label} {t[name][0]} {error:.4f}")
        print(f"{name}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
