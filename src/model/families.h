// The model families llmserve serves, as data: each is a config.json reader (filling the one
// ModelConfig spec the forward pass is parameterised by) and a table of its checkpoint's tensor
// names. Adding a family means adding a reader and a table here, not a forward pass.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"

namespace llmserve::model {

class Fields;

// Fills `config` from config.json with the reader of config.model_type (empty: gpt2).
// kUnsupported naming model_type and the supported families when there is none.
void read_family_config(const Fields& fields, ModelConfig& config);

// "gpt2, llama, mistral, qwen2, qwen3"
std::string supported_families();

// Where a family keeps each tensor. Per-layer names contain "{}" for the layer index. A product
// listed as several tensors (q, k, v; gate, up) is concatenated along its outputs at load. Norms
// name the weight; their bias (LayerNorm) is the same name with "bias" for "weight".
struct TensorNames {
    std::string embed;               // [vocab, n_embd]
    std::string position_embed;      // [n_positions, n_embd]; empty: rotary positions
    std::string final_norm;          // [n_embd]
    std::string lm_head;             // [vocab, n_embd], unless tied to embed
    backend::MatrixLayout layout{};  // of the per-layer products in the checkpoint
    std::string attn_norm, mlp_norm;
    std::vector<std::string> qkv;  // one fused [.., (H + 2 KV) D] product or q, k, v
    std::string o_proj;
    std::string q_norm, k_norm;   // per-head norms (qwen3)
    std::vector<std::string> up;  // plain: {fc}; gated: {gate, up}
    std::string down;
    // The bias of a product: "<name minus weight>bias".
    static std::string bias_of(const std::string& weight_name);
};

const TensorNames& tensor_names(const ModelConfig& config);

}  // namespace llmserve::model
