// The engine: one thread that owns the model, the KV cache and the scheduler, running one forward
// pass per step over every active sequence (continuous batching). Callers (CLI, HTTP server, tests)
// submit tokenized requests and read each request's stream of text pieces, then its result. The
// engine never knows about HTTP.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "engine/request.h"
#include "model/config.h"

namespace llmserve::model {
class Model;
}
namespace llmserve::tokenizer {
class Tokenizer;
}

namespace llmserve::engine {

struct EngineOptions {
    int max_running_sequences = 64;  // sequences decoded together in one step
    // Token budget of one step (decode tokens + prefill chunks). 256 keeps a long prompt from
    // stalling running streams for long (on 2 cores a 512-token chunk held them ~0.5 s), while
    // prefill runs as fast as with larger chunks.
    int max_step_tokens = 256;
    int max_waiting_requests = 256;  // queue bound: submit() beyond it throws kResourceExhausted
    std::size_t kv_cache_bytes =
        0;  // 0 = enough for max_running_sequences full contexts, capped by memory
    int kv_block_tokens = 16;                               // tokens per KV cache block
    backend::KvFormat kv_format = backend::KvFormat::kF32;  // f16: twice the tokens per byte
    int max_samples_per_request = 16;                       // bound on GenerationRequest::n
};

// What the engine's KV pool costs for a model: a block holds the keys and values of
// `block_tokens` positions for every layer, in `format`; a context takes the whole blocks
// covering n_positions (the least memory the engine accepts).
struct KvCacheGeometry {
    std::size_t block_bytes = 0;
    int context_blocks = 0;
    std::size_t one_context_bytes() const { return block_bytes * context_blocks; }
};
KvCacheGeometry kv_cache_geometry(const model::ModelConfig& config, int block_tokens,
                                  backend::KvFormat format);

// A point-in-time view for /metrics, /ready and tests.
struct EngineStats {
    int running_sequences = 0;
    int waiting_requests = 0;
    int kv_blocks_total = 0;
    int kv_blocks_free = 0;
    std::uint64_t steps = 0;
    std::uint64_t step_tokens_total = 0;     // sum over steps of tokens in the batch
    std::uint64_t step_sequences_total = 0;  // sum over steps of sequences in the batch
    int last_batch_sequences = 0;
    std::uint64_t prompt_tokens_total = 0;
    std::uint64_t generated_tokens_total = 0;
    std::uint64_t prefix_cache_queries = 0;  // full prompt blocks looked up
    std::uint64_t prefix_cache_hits = 0;     // full prompt blocks reused
    std::uint64_t requests_finished = 0;
    std::uint64_t requests_cancelled = 0;
    std::uint64_t requests_timed_out = 0;
    std::uint64_t requests_failed = 0;  // ended by an error (finish reason kError)
    std::uint64_t step_failures = 0;    // steps that failed as a whole (every request in them)
};

class Engine {
  public:
    // Refuses (Error kInvalidArgument naming the model) a model whose first forward pass gives
    // non-finite logits, such as one whose weights hold NaN.
    Engine(std::shared_ptr<const model::Model> model,
           std::shared_ptr<const tokenizer::Tokenizer> tokenizer, EngineOptions options);
    ~Engine();  // stops the engine thread; requests still in flight finish as kCancelled
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Validates the request (throws Error with param() naming the field) and queues it; throws
    // Error(kResourceExhausted) when the waiting queue is full. Never blocks on generation.
    std::shared_ptr<RequestHandle> submit(GenerationRequest request);

    EngineStats stats() const;
    const model::Model& model() const;
    const tokenizer::Tokenizer& tokenizer() const;

  private:
    struct State;
    std::unique_ptr<State> state_;
};

}  // namespace llmserve::engine
