// The engine end to end: continuous batching gives the same tokens as running each request alone,
// the paged KV cache and the prefix cache never leak or change results, and the generation
// controls (seeds, n samples, stop rules, logprobs, streaming, cancellation, deadlines, queue
// bound, validation) behave as documented in engine.h / request.h.
//
// Token-level tests use the first tiny model under $LLMSERVE_FIXTURES/models (no tokenizer, fast);
// text-level tests use the embedded model models/gpt2-brown-mini with its tokenizer. Expected
// values come from the engine's own runs of the same request alone, from a direct forward pass of
// the model, or from a one-shot search over the complete text; none is written into the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "common/error.h"
#include "engine/engine.h"
#include "engine/sampling/sampler.h"
#include "model/model.h"
#include "tests/common/model_runs.h"
#include "tests/common/test_paths.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Tokens = std::vector<TokenId>;
using ModelPtr = std::shared_ptr<const model::Model>;
using TokenizerPtr = std::shared_ptr<const tokenizer::Tokenizer>;
using testing::full_logits;
using testing::tokens_of;

// Longest any single request may take before the test calls it a hang.
constexpr auto kHangLimit = std::chrono::seconds(60);
// One compute thread: the models are small, and test machines are shared and busy.
constexpr int kBackendThreads = 1;

ModelPtr load_model(const fs::path& dir) {
    return model::Model::load(
        dir, {backend::make_cpu_backend(kBackendThreads), backend::WeightFormat::kAuto});
}

// The first fixture model folder (sorted), loaded once per process; null when there is none.
ModelPtr tiny_model() {
    static const ModelPtr model = []() -> ModelPtr {
        for (const fs::path& dir : testing::subdirectories(testing::fixtures_dir() / "models"))
            if (fs::exists(dir / "config.json")) return load_model(dir);
        return nullptr;
    }();
    return model;
}

ModelPtr mini_model() {
    static const ModelPtr model = load_model(testing::embedded_model_dir());
    return model;
}

TokenizerPtr mini_tokenizer() {
    static const TokenizerPtr tokenizer = std::make_shared<const tokenizer::Tokenizer>(
        tokenizer::Tokenizer::from_directory(testing::embedded_model_dir()));
    return tokenizer;
}

#define REQUIRE_TINY_MODEL()            \
    const ModelPtr tiny = tiny_model(); \
    if (!tiny) GTEST_SKIP() << "no model folder under " << testing::fixtures_dir() / "models"

constexpr int kBlockTokens = EngineOptions{}.kv_block_tokens;

// Bytes of `blocks` KV blocks of the default size for `model` (K and V, float32, every layer).
std::size_t kv_bytes(const model::Model& model, int blocks) {
    return engine::kv_cache_geometry(model.config(), kBlockTokens, backend::KvFormat::kF32)
               .block_bytes *
           blocks;
}

// Options with a KV pool of `contexts` full contexts (small, so that tests also exercise the pool
// running full and the prefix cache being evicted).
EngineOptions pool_options(const model::Model& model, int contexts,
                           backend::KvFormat kv_format = backend::KvFormat::kF32) {
    EngineOptions options;
    options.kv_format = kv_format;
    const engine::KvCacheGeometry geometry =
        engine::kv_cache_geometry(model.config(), kBlockTokens, kv_format);
    options.kv_cache_bytes = geometry.one_context_bytes() * contexts;
    return options;
}

Tokens random_prompt(std::mt19937& rng, int length, int vocab) {
    Tokens prompt(static_cast<std::size_t>(length));
    for (TokenId& token : prompt) token = static_cast<TokenId>(rng() % vocab);
    return prompt;
}

bool valid_utf8(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto lead = static_cast<unsigned char>(text[i]);
        std::size_t length = 0;
        std::uint32_t code = 0;
        if (lead < 0x80) {
            length = 1, code = lead;
        } else if ((lead & 0xE0) == 0xC0) {
            length = 2, code = lead & 0x1F;
        } else if ((lead & 0xF0) == 0xE0) {
            length = 3, code = lead & 0x0F;
        } else if ((lead & 0xF8) == 0xF0) {
            length = 4, code = lead & 0x07;
        } else {
            return false;
        }
        if (i + length > text.size()) return false;
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(text[i + k]);
            if ((next & 0xC0) != 0x80) return false;
            code = (code << 6) | (next & 0x3F);
        }
        static constexpr std::uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
        if (code < kMinimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
            return false;
        i += length;
    }
    return true;
}

// Everything a request produced: its stream, per sample, and its result.
struct Outcome {
    RequestResult result;
    std::map<int, std::vector<StreamEvent>> events;  // by sample index
};

// Reads the stream until the request is finished; fails (and cancels) if that takes too long.
Outcome drain(RequestHandle& handle) {
    Outcome outcome;
    const auto give_up = Clock::now() + kHangLimit;
    while (!handle.finished()) {
        if (Clock::now() > give_up) {
            ADD_FAILURE() << "request " << handle.id() << " did not finish";
            handle.cancel();
            break;
        }
        if (auto event = handle.next_event(milliseconds(50)))
            outcome.events[event->index].push_back(std::move(*event));
    }
    outcome.result = handle.wait();
    return outcome;
}

RequestResult run(Engine& engine, const GenerationRequest& request) {
    return drain(*engine.submit(request)).result;
}

// Waits until `condition` holds (polling the engine's stats), or fails after kHangLimit.
template <typename Condition>
void wait_until(const Engine& engine, Condition condition, const char* what) {
    const auto give_up = Clock::now() + kHangLimit;
    while (!condition(engine.stats())) {
        if (Clock::now() > give_up) {
            ADD_FAILURE() << "timed out waiting for " << what;
            return;
        }
        std::this_thread::sleep_for(milliseconds(1));
    }
}

void expect_pool_whole(const Engine& engine) {
    const EngineStats stats = engine.stats();
    EXPECT_EQ(stats.kv_blocks_free, stats.kv_blocks_total);
    EXPECT_EQ(stats.running_sequences, 0);
    EXPECT_EQ(stats.waiting_requests, 0);
}

ErrorCode expect_error(const auto& action, const std::string& param) {
    try {
        action();
    } catch (const Error& error) {
        EXPECT_EQ(error.param(), param) << error.what();
        EXPECT_NE(std::string(error.what()).find(param), std::string::npos)
            << "message should name '" << param << "': " << error.what();
        return error.code();
    }
    ADD_FAILURE() << "expected an Error about '" << param << "'";
    return ErrorCode::kInternal;
}

// A mix of requests: prompt lengths around block boundaries up to most of the context, different
// max_new_tokens (so some finish early), one with n = 3. Sampled ones use every sampling control.
std::vector<GenerationRequest> mixed_requests(const model::Model& model, bool sampled,
                                              std::uint32_t seed) {
    const auto& config = model.config();
    std::mt19937 rng(seed);
    const int context = config.n_positions;
    const std::vector<int> lengths = {1, 5, 15, 16, 17, 33, 40, 23, 2, context / 2, context - 24};
    const std::vector<int> new_tokens = {12, 3, 20, 1, 9, 16, 0, 14, 18, 7, 20};
    std::vector<GenerationRequest> requests;
    for (std::size_t i = 0; i < lengths.size(); ++i) {
        GenerationRequest request;
        const int length = std::min(lengths[i], context - 2);
        request.prompt = random_prompt(rng, length, config.vocab_size);
        request.stop.max_new_tokens = std::min(new_tokens[i], context - length);
        request.stop.ignore_eos = i % 3 != 0;  // a few may finish early on EOS
        if (i == 7) request.n = 3;
        if (sampled) {
            request.sampling.temperature = 0.7f + 0.1f * static_cast<float>(i % 4);
            request.sampling.top_k = i % 2 == 0 ? 50 : 0;
            request.sampling.top_p = i % 3 == 1 ? 0.9f : 1.0f;
            request.sampling.min_p = i == 4 ? 0.05f : 0.0f;
            request.sampling.repetition_penalty = i % 4 == 2 ? 1.3f : 1.0f;
            request.sampling.presence_penalty = i % 5 == 3 ? 0.5f : 0.0f;
            request.sampling.frequency_penalty = i % 5 == 4 ? 0.4f : 0.0f;
            request.sampling.no_repeat_ngram_size = i == 5 ? 2 : 0;
            request.sampling.seed = 1000 + i;
        } else {
            request.sampling.temperature = 0.0f;
        }
        requests.push_back(std::move(request));
    }
    return requests;
}

// Runs every request alone (one after the other on one engine), then all together on a fresh
// engine with a small step budget (chunked prefill), few running slots and a small pool, submitted
// in three waves while earlier ones decode; every sample's tokens and finish reason must match.
void expect_batched_equals_alone(const ModelPtr& model, const TokenizerPtr& tokenizer,
                                 const std::vector<GenerationRequest>& requests,
                                 int max_step_tokens,
                                 backend::KvFormat kv_format = backend::KvFormat::kF32) {
    std::vector<RequestResult> alone;
    {
        Engine engine(model, tokenizer, pool_options(*model, 2, kv_format));
        for (const GenerationRequest& request : requests) alone.push_back(run(engine, request));
    }
    EngineOptions options = pool_options(*model, 3, kv_format);
    options.max_step_tokens = max_step_tokens;
    options.max_running_sequences = 6;
    Engine engine(model, tokenizer, options);
    std::vector<std::shared_ptr<RequestHandle>> handles;
    const std::size_t waves[] = {requests.size() / 3, 2 * requests.size() / 3, requests.size()};
    std::uint64_t generated_before_wave = 0;
    for (std::size_t end : waves) {
        // Let the running requests make progress before the next wave arrives mid-run.
        wait_until(
            engine,
            [&](const EngineStats& s) {
                return s.generated_tokens_total >= generated_before_wave + 4 ||
                       (s.running_sequences == 0 && s.waiting_requests == 0);
            },
            "progress between waves");
        generated_before_wave = engine.stats().generated_tokens_total;
        while (handles.size() < end) handles.push_back(engine.submit(requests[handles.size()]));
    }
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const RequestResult together = drain(*handles[i]).result;
        ASSERT_EQ(together.sequences.size(), alone[i].sequences.size());
        for (std::size_t s = 0; s < together.sequences.size(); ++s) {
            const SequenceResult& a = alone[i].sequences[s];
            const SequenceResult& b = together.sequences[s];
            EXPECT_EQ(tokens_of(b), tokens_of(a)) << "request " << i << " sample " << s;
            EXPECT_EQ(b.finish_reason, a.finish_reason) << "request " << i << " sample " << s;
            EXPECT_EQ(b.text, a.text) << "request " << i << " sample " << s;
        }
        if (requests[i].sampling.seed) {
            EXPECT_EQ(together.seed, *requests[i].sampling.seed);
        }
    }
    const EngineStats stats = engine.stats();
    EXPECT_GT(stats.step_sequences_total, stats.steps) << "requests never ran together";
    expect_pool_whole(engine);
}

TEST(EngineBatching, GreedyBatchedEqualsAlone) {
    REQUIRE_TINY_MODEL();
    expect_batched_equals_alone(tiny, nullptr, mixed_requests(*tiny, false, 1), 8);
}

TEST(EngineBatching, SeededSamplingBatchedEqualsAlone) {
    REQUIRE_TINY_MODEL();
    expect_batched_equals_alone(tiny, nullptr, mixed_requests(*tiny, true, 2), 16);
}

// With an f16 cache, batching is still invisible: every row reads the same rounded values.
TEST(EngineBatching, HalfPrecisionKvCacheBatchedEqualsAlone) {
    REQUIRE_TINY_MODEL();
    expect_batched_equals_alone(tiny, nullptr, mixed_requests(*tiny, true, 3), 16,
                                backend::KvFormat::kF16);
}

// Every Llama-family fixture (GQA, RoPE, sliding windows, q/k norms): batching, chunked prefill
// and the f16 cache stay invisible there too.
TEST(EngineBatching, LlamaFamilyBatchedEqualsAlone) {
    const auto dirs = testing::subdirectories(testing::fixtures_dir() / "models-llama");
    if (dirs.empty()) GTEST_SKIP() << "no models-llama folder in " << testing::fixtures_dir();
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.filename().string());
        const ModelPtr model = load_model(dir);
        expect_batched_equals_alone(model, nullptr, mixed_requests(*model, false, 4), 8);
        expect_batched_equals_alone(model, nullptr, mixed_requests(*model, true, 5), 16,
                                    backend::KvFormat::kF16);
    }
}

TEST(EngineBatching, TextRequestsBatchedEqualAloneOnEmbeddedModel) {
    const ModelPtr model = mini_model();
    const TokenizerPtr tokenizer = mini_tokenizer();
    const std::vector<std::string> prompts = {
        "The jury said", "It was a cold morning in the city, and the mayor", "Of all the",
        "The committee reported that the new law would require every county to", "He"};
    std::vector<GenerationRequest> requests;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        GenerationRequest request;
        request.prompt = tokenizer->encode(prompts[i]);
        request.stop.max_new_tokens = 10 + 4 * static_cast<int>(i);
        request.sampling.temperature = i % 2 == 0 ? 0.0f : 0.9f;
        request.sampling.top_p = 0.95f;
        request.sampling.seed = 77 + i;
        if (i == 3) request.stop.stop = {" of the"};
        requests.push_back(std::move(request));
    }
    expect_batched_equals_alone(model, tokenizer, requests, 8);
}

// Sanitized builds (ten times slower here) run the same churn with fewer requests.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kLeakTestRequests = 500;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr int kLeakTestRequests = 500;
#else
constexpr int kLeakTestRequests = 2000;
#endif
#else
constexpr int kLeakTestRequests = 2000;
#endif

// Thousands of short requests with shared prefixes, several samples, random cancels and deadlines
// through a small pool: every request finishes as asked and the pool is whole afterwards.
TEST(EngineKvCache, ThousandsOfRequestsLeakNoBlock) {
    REQUIRE_TINY_MODEL();
    const auto& config = tiny->config();
    EngineOptions options = pool_options(*tiny, 2);
    options.max_running_sequences = 32;
    options.max_step_tokens = 64;
    Engine engine(tiny, nullptr, options);
    std::mt19937 rng(7);
    std::vector<Tokens> shared_prefixes;
    for (int i = 0; i < 4; ++i)
        shared_prefixes.push_back(random_prompt(rng, 40, config.vocab_size));

    struct Pending {
        std::shared_ptr<RequestHandle> handle;
        int n, max_new_tokens;
        bool cancelled, expired;
    };
    constexpr int kRequests = kLeakTestRequests;
    constexpr std::size_t kInFlight = 150;
    std::vector<Pending> pending;
    int completed = 0;
    const auto check = [&](Pending& p) {
        const RequestResult result = drain(*p.handle).result;
        ASSERT_EQ(static_cast<int>(result.sequences.size()), p.n);
        for (const SequenceResult& sequence : result.sequences) {
            EXPECT_LE(static_cast<int>(sequence.tokens.size()), p.max_new_tokens);
            if (p.cancelled) continue;  // it may have finished before the cancel took effect
            EXPECT_EQ(sequence.finish_reason,
                      p.expired ? FinishReason::kTimeout : FinishReason::kLength);
        }
        ++completed;
    };
    for (int i = 0; i < kRequests; ++i) {
        GenerationRequest request;
        const int tail = static_cast<int>(rng() % 20);
        if (rng() % 2 == 0) request.prompt = shared_prefixes[rng() % shared_prefixes.size()];
        const Tokens extra = random_prompt(rng, tail + 1, config.vocab_size);
        request.prompt.insert(request.prompt.end(), extra.begin(), extra.end());
        request.stop.max_new_tokens = static_cast<int>(rng() % 7);
        request.stop.ignore_eos = true;
        request.n = 1 + static_cast<int>(rng() % 3);
        request.sampling.seed = rng();
        const bool expired = rng() % 20 == 0;
        if (expired) request.deadline = Clock::now() - milliseconds(1);
        const int n = request.n;
        const int max_new_tokens = request.stop.max_new_tokens;
        Pending p{engine.submit(std::move(request)), n, max_new_tokens, false, expired};
        if (rng() % 8 == 0) {
            if (rng() % 2 == 0) p.handle->next_event(milliseconds(1));
            p.handle->cancel();
            p.cancelled = true;
        }
        pending.push_back(std::move(p));
        if (pending.size() >= kInFlight) {
            for (Pending& q : pending) check(q);
            pending.clear();
        }
    }
    for (Pending& q : pending) check(q);
    EXPECT_EQ(completed, kRequests);
    const EngineStats stats = engine.stats();
    EXPECT_EQ(stats.requests_finished, static_cast<std::uint64_t>(kRequests));
    EXPECT_GT(stats.prefix_cache_hits, 0u);
    expect_pool_whole(engine);
}

// A long prompt twice: the second run reuses every full block but the last token's and gives the
// same tokens; a prompt sharing only a prefix reuses just the shared full blocks and matches a
// fresh engine's (cache-miss) output.
void expect_prefix_hits_match_misses(const ModelPtr& tiny) {
    const auto& config = tiny->config();
    std::mt19937 rng(11);
    const int length = std::min(4 * kBlockTokens + 5, config.n_positions - 12);
    const int full_blocks = (length - 1) / kBlockTokens;
    ASSERT_GE(full_blocks, 2) << "the fixture model's context is too short for this test";

    for (const bool sampled : {false, true}) {
        SCOPED_TRACE(sampled ? "sampled" : "greedy");
        GenerationRequest request;
        request.prompt = random_prompt(rng, length, config.vocab_size);
        request.stop.max_new_tokens = 10;
        request.stop.ignore_eos = true;
        request.sampling.temperature = sampled ? 1.0f : 0.0f;
        request.sampling.seed = 5;
        request.n = sampled ? 2 : 1;

        GenerationRequest sharing = request;
        const int shared_blocks = full_blocks / 2;
        const Tokens tail =
            random_prompt(rng, length - shared_blocks * kBlockTokens - 3, config.vocab_size);
        sharing.prompt.resize(static_cast<std::size_t>(shared_blocks * kBlockTokens));
        sharing.prompt.insert(sharing.prompt.end(), tail.begin(), tail.end());

        RequestResult miss_sharing;
        {
            Engine fresh(tiny, nullptr, pool_options(*tiny, 2));
            miss_sharing = run(fresh, sharing);
        }
        Engine engine(tiny, nullptr, pool_options(*tiny, 2));
        const RequestResult first = run(engine, request);
        const std::uint64_t hits_before = engine.stats().prefix_cache_hits;
        const RequestResult second = run(engine, request);
        EXPECT_EQ(engine.stats().prefix_cache_hits - hits_before,
                  static_cast<std::uint64_t>(full_blocks));
        ASSERT_EQ(second.sequences.size(), first.sequences.size());
        for (std::size_t s = 0; s < first.sequences.size(); ++s)
            EXPECT_EQ(tokens_of(second.sequences[s]), tokens_of(first.sequences[s]));

        const std::uint64_t hits_before_sharing = engine.stats().prefix_cache_hits;
        const RequestResult hit_sharing = run(engine, sharing);
        EXPECT_EQ(engine.stats().prefix_cache_hits - hits_before_sharing,
                  static_cast<std::uint64_t>(shared_blocks));
        ASSERT_EQ(hit_sharing.sequences.size(), miss_sharing.sequences.size());
        for (std::size_t s = 0; s < hit_sharing.sequences.size(); ++s)
            EXPECT_EQ(tokens_of(hit_sharing.sequences[s]), tokens_of(miss_sharing.sequences[s]));
        expect_pool_whole(engine);
    }
}

TEST(EnginePrefixCache, HitsGiveTheSameOutputAsMisses) {
    REQUIRE_TINY_MODEL();
    expect_prefix_hits_match_misses(tiny);
}

TEST(EnginePrefixCache, HitsGiveTheSameOutputAsMissesOnTheLlamaFamily) {
    const auto dirs = testing::subdirectories(testing::fixtures_dir() / "models-llama");
    if (dirs.empty()) GTEST_SKIP() << "no models-llama folder in " << testing::fixtures_dir();
    for (const fs::path& dir : dirs) {
        SCOPED_TRACE(dir.filename().string());
        expect_prefix_hits_match_misses(load_model(dir));
    }
}

double log_softmax_at(std::span<const float> row, TokenId token) {
    const double best = *std::max_element(row.begin(), row.end());
    double total = 0.0;
    for (float logit : row) total += std::exp(static_cast<double>(logit) - best);
    return static_cast<double>(row[token]) - best - std::log(total);
}

void expect_close(double got, double expected, const std::string& what) {
    EXPECT_NEAR(got, expected, 1e-3 * (1.0 + std::abs(expected))) << what;
}

// Generated and prompt log-probabilities equal the log-softmax of a direct forward pass, on a
// cache miss and on a prefix-cache hit alike; top-N lists are sorted and hold the greedy choice.
TEST(EngineLogprobs, MatchADirectForwardPass) {
    REQUIRE_TINY_MODEL();
    const auto& config = tiny->config();
    std::mt19937 rng(3);
    const int top_n = 5;
    GenerationRequest request;
    request.prompt = random_prompt(rng, std::min(37, config.n_positions - 10), config.vocab_size);
    request.stop.max_new_tokens = 8;
    request.stop.ignore_eos = true;
    request.sampling.temperature = 0.0f;
    request.sampling.logprobs = top_n;
    request.sampling.prompt_logprobs = true;

    Engine engine(tiny, nullptr, pool_options(*tiny, 2));
    GenerationRequest warm = request;  // puts the prompt's blocks in the prefix cache
    warm.sampling.prompt_logprobs = false;
    warm.sampling.logprobs.reset();
    run(engine, warm);
    for (int attempt = 0; attempt < 2; ++attempt) {
        SCOPED_TRACE(attempt == 0 ? "prefix cached" : "again");
        const RequestResult result = run(engine, request);
        const SequenceResult& sequence = result.sequences.at(0);
        Tokens all = request.prompt;
        for (const GeneratedToken& generated : sequence.tokens) all.push_back(generated.token);
        const std::vector<float> logits = full_logits(*tiny, all);
        const auto row = [&](std::size_t position) {
            return std::span<const float>(logits).subspan(position * config.vocab_size,
                                                          config.vocab_size);
        };
        const std::size_t prompt = request.prompt.size();
        ASSERT_EQ(result.prompt_logprobs.size(), prompt);
        EXPECT_FALSE(result.prompt_logprobs[0].has_value());
        for (std::size_t i = 1; i < prompt; ++i) {
            ASSERT_TRUE(result.prompt_logprobs[i].has_value()) << i;
            expect_close(*result.prompt_logprobs[i], log_softmax_at(row(i - 1), request.prompt[i]),
                         "prompt token " + std::to_string(i));
        }
        ASSERT_EQ(sequence.tokens.size(), 8u);
        for (std::size_t i = 0; i < sequence.tokens.size(); ++i) {
            const GeneratedToken& generated = sequence.tokens[i];
            expect_close(generated.logprob, log_softmax_at(row(prompt - 1 + i), generated.token),
                         "generated token " + std::to_string(i));
            ASSERT_EQ(generated.top.size(), static_cast<std::size_t>(top_n));
            EXPECT_EQ(generated.top[0].token, generated.token);  // greedy
            EXPECT_FLOAT_EQ(generated.top[0].logprob, generated.logprob);
            for (int k = 1; k < top_n; ++k) {
                EXPECT_GE(generated.top[k - 1].logprob, generated.top[k].logprob);
                expect_close(generated.top[k].logprob,
                             log_softmax_at(row(prompt - 1 + i), generated.top[k].token),
                             "alternative " + std::to_string(k));
            }
        }
    }
    expect_pool_whole(engine);
}

// n samples share one prefill: they differ from one another, each is reproducible, and sample i
// equals a single-sample request seeded with derive_seed(seed, i) (so sample 0 equals the n = 1
// result with the same seed). Prompts end mid-block and on a block boundary (copy-on-write of the
// shared partial block, or none).
TEST(EngineSamples, ShareAPrefillAndEachMatchesItsOwnSeed) {
    REQUIRE_TINY_MODEL();
    const auto& config = tiny->config();
    std::mt19937 rng(21);
    Engine engine(tiny, nullptr, pool_options(*tiny, 2));
    for (const int length : {kBlockTokens + 7, 2 * kBlockTokens}) {
        SCOPED_TRACE("prompt of " + std::to_string(length));
        GenerationRequest request;
        request.prompt = random_prompt(rng, length, config.vocab_size);
        request.stop.max_new_tokens = 12;
        request.stop.ignore_eos = true;
        request.sampling.temperature = 1.5f;
        request.sampling.seed = 4242;
        request.n = 4;
        const RequestResult result = run(engine, request);
        ASSERT_EQ(result.sequences.size(), 4u);
        EXPECT_EQ(result.completion_tokens, 4 * 12);
        for (int i = 0; i < request.n; ++i) {
            EXPECT_EQ(result.sequences[i].index, i);
            for (int j = 0; j < i; ++j)
                EXPECT_NE(tokens_of(result.sequences[i]), tokens_of(result.sequences[j]))
                    << "samples " << i << " and " << j;
        }
        const RequestResult again = run(engine, request);
        for (int i = 0; i < request.n; ++i) {
            EXPECT_EQ(tokens_of(again.sequences[i]), tokens_of(result.sequences[i])) << i;
            GenerationRequest single = request;
            single.n = 1;
            single.sampling.seed = derive_seed(*request.sampling.seed, i);
            EXPECT_EQ(tokens_of(run(engine, single).sequences.at(0)),
                      tokens_of(result.sequences[i]))
                << "sample " << i;
        }
    }
    expect_pool_whole(engine);
}

TEST(EngineSamples, UnseededRequestReportsASeedThatReplaysIt) {
    REQUIRE_TINY_MODEL();
    std::mt19937 rng(8);
    Engine engine(tiny, nullptr, pool_options(*tiny, 2));
    GenerationRequest request;
    request.prompt = random_prompt(rng, 9, tiny->config().vocab_size);
    request.stop.max_new_tokens = 10;
    request.stop.ignore_eos = true;
    request.sampling.temperature = 1.5f;
    const RequestResult first = run(engine, request);
    request.sampling.seed = first.seed;
    EXPECT_EQ(tokens_of(run(engine, request).sequences.at(0)), tokens_of(first.sequences.at(0)));
}

// Without a tokenizer there is no text, but the stream still delivers tokens as they are made.
TEST(EngineStreaming, TokensStreamWithoutATokenizer) {
    REQUIRE_TINY_MODEL();
    std::mt19937 rng(9);
    Engine engine(tiny, nullptr, pool_options(*tiny, 2));
    GenerationRequest request;
    request.prompt = random_prompt(rng, 6, tiny->config().vocab_size);
    request.stop.max_new_tokens = 20;
    request.stop.ignore_eos = true;
    request.n = 2;
    request.sampling.seed = 1;
    const Outcome outcome = drain(*engine.submit(request));
    for (const SequenceResult& sequence : outcome.result.sequences) {
        const auto& events = outcome.events.at(sequence.index);
        EXPECT_GT(events.size(), 1u) << "tokens arrived in one lump at the end";
        Tokens streamed;
        for (const StreamEvent& event : events) {
            EXPECT_TRUE(event.text.empty());
            for (const GeneratedToken& generated : event.tokens)
                streamed.push_back(generated.token);
        }
        EXPECT_EQ(streamed, tokens_of(sequence));
    }
}

// --- Text-level behaviour on the embedded model ------------------------------------------------

GenerationRequest text_request(const std::string& prompt, int max_new_tokens) {
    GenerationRequest request;
    request.prompt = mini_tokenizer()->encode(prompt);
    request.stop.max_new_tokens = max_new_tokens;
    request.stop.ignore_eos = true;
    request.sampling.temperature = 0.0f;
    return request;
}

// The embedded model's engine options with a pool of three contexts unless `options` sets one.
EngineOptions mini_options(EngineOptions options = {}) {
    if (options.kv_cache_bytes == 0)
        options.kv_cache_bytes = pool_options(*mini_model(), 3).kv_cache_bytes;
    return options;
}

Engine make_mini_engine(EngineOptions options = {}) {
    return Engine(mini_model(), mini_tokenizer(), mini_options(options));
}

// The reference definition of stop strings over a complete text: the occurrence that starts
// earliest wins, then the shortest stop; returns (text before it, stop) or nullopt.
std::optional<std::pair<std::string, std::string>> first_stop(
    const std::string& text, const std::vector<std::string>& stops) {
    std::optional<std::pair<std::string, std::string>> best;
    std::size_t best_position = std::string::npos;
    for (const std::string& stop : stops) {
        const std::size_t position = text.find(stop);
        if (position == std::string::npos) continue;
        if (!best || position < best_position ||
            (position == best_position && stop.size() < best->second.size())) {
            best_position = position;
            best = std::make_pair(text.substr(0, position), stop);
        }
    }
    return best;
}

// Byte offsets in the decoded text where one token ends and the next begins (where the decode of
// the first k tokens is a clean prefix of the whole text).
std::vector<std::size_t> token_boundaries(const Tokens& tokens, const std::string& text) {
    std::vector<std::size_t> boundaries;
    for (std::size_t k = 1; k < tokens.size(); ++k) {
        const std::string prefix =
            mini_tokenizer()->decode(std::span<const TokenId>(tokens.data(), k));
        if (text.starts_with(prefix) && !prefix.empty() &&
            (boundaries.empty() || boundaries.back() < prefix.size()))
            boundaries.push_back(prefix.size());
    }
    return boundaries;
}

// A request, the stop strings to add to it, and its output without them.
struct StopCase {
    GenerationRequest request;
    std::vector<std::string> stops;
    Tokens free_tokens;
    std::string free_text;
};

// Checks one outcome against the one-shot definition applied to the free run's text.
void check_stop_case(const StopCase& stop_case, const Outcome& streamed,
                     const RequestResult& waited) {
    const SequenceResult& sequence = streamed.result.sequences.at(0);
    const auto expected = first_stop(stop_case.free_text, stop_case.stops);
    std::string stream_text;
    if (streamed.events.contains(0)) {
        for (const StreamEvent& event : streamed.events.at(0)) {
            EXPECT_TRUE(valid_utf8(event.text));
            stream_text += event.text;
        }
    }
    EXPECT_EQ(stream_text, sequence.text);
    EXPECT_EQ(waited.sequences.at(0).text, sequence.text);
    EXPECT_EQ(tokens_of(waited.sequences.at(0)), tokens_of(sequence));
    const Tokens tokens = tokens_of(sequence);
    const Tokens& free_tokens = stop_case.free_tokens;
    ASSERT_LE(tokens.size(), free_tokens.size());
    EXPECT_TRUE(std::equal(tokens.begin(), tokens.end(), free_tokens.begin()))
        << "stops changed the tokens";
    if (!expected) {
        EXPECT_EQ(sequence.finish_reason, FinishReason::kLength);
        EXPECT_EQ(sequence.text, stop_case.free_text);
        EXPECT_TRUE(sequence.matched_stop.empty());
        return;
    }
    EXPECT_EQ(sequence.finish_reason, FinishReason::kStop);
    EXPECT_EQ(sequence.text, expected->first);
    EXPECT_EQ(sequence.matched_stop, expected->second);
    EXPECT_FALSE(sequence.matched_stop_token.has_value());
    // The generated tokens reach just past the stop: their text holds it, and with one stop,
    // without the last token it would not be complete yet.
    ASSERT_FALSE(tokens.empty());
    const std::string decoded = mini_tokenizer()->decode(tokens);
    EXPECT_TRUE(decoded.starts_with(expected->first + expected->second)) << decoded;
    if (stop_case.stops.size() == 1) {
        const std::string shorter =
            mini_tokenizer()->decode(std::span<const TokenId>(tokens.data(), tokens.size() - 1));
        EXPECT_EQ(shorter.find(expected->second), std::string::npos)
            << "generation went on after the stop was complete";
    }
}

// Runs every case twice, all at once (one run streamed, one only waited for), and checks each.
void expect_stops_match_reference(Engine& engine, const std::vector<StopCase>& cases) {
    std::vector<std::pair<std::shared_ptr<RequestHandle>, std::shared_ptr<RequestHandle>>> handles;
    for (const StopCase& stop_case : cases) {
        GenerationRequest request = stop_case.request;
        request.stop.stop = stop_case.stops;
        handles.emplace_back(engine.submit(request), engine.submit(request));
    }
    for (std::size_t i = 0; i < cases.size(); ++i) {
        std::string listed;
        for (const std::string& stop : cases[i].stops) listed += "[" + stop + "]";
        SCOPED_TRACE("stops: " + listed);
        const Outcome streamed = drain(*handles[i].first);
        check_stop_case(cases[i], streamed, drain(*handles[i].second).result);
    }
}

TEST(EngineStopStrings, SpanningBoundariesAtTheStartAndOverlapping) {
    Engine engine = make_mini_engine();
    const GenerationRequest request = text_request("The jury said", 48);
    const SequenceResult free_run = run(engine, request).sequences.at(0);
    const Tokens free_tokens = tokens_of(free_run);
    const std::string& text = free_run.text;
    ASSERT_EQ(free_run.finish_reason, FinishReason::kLength);
    ASSERT_EQ(text, mini_tokenizer()->decode(free_tokens));
    const std::vector<std::size_t> boundaries = token_boundaries(free_tokens, text);
    ASSERT_GE(boundaries.size(), 10u) << text;

    std::vector<std::vector<std::string>> stop_sets;
    for (std::size_t k = 1; k <= 4; ++k) {
        const std::size_t at = boundaries[boundaries.size() * k / 5];
        if (at < 2 || at + 6 > text.size()) continue;
        stop_sets.push_back({text.substr(at - 2, 4)});                      // spans a boundary
        stop_sets.push_back({text.substr(at - 2, 8), text.substr(at, 3)});  // overlapping
        stop_sets.push_back({text.substr(at, 2), text.substr(at - 1, 5), "\n\n\n"});  // several
    }
    stop_sets.push_back({text.substr(0, 2)});                       // at the very start
    stop_sets.push_back({text.substr(0, 1), text.substr(0, 200)});  // a long one and its first byte
    stop_sets.push_back({"@@ never generated @@"});
    std::vector<StopCase> cases;
    for (auto& stops : stop_sets) cases.push_back({request, std::move(stops), free_tokens, text});
    expect_stops_match_reference(engine, cases);
    expect_pool_whole(engine);
}

// The first multi-byte character of `text` after its first byte, other than U+FFFD (which the
// decode of a prefix also shows for an unfinished character): (offset, length), or nullopt.
std::optional<std::pair<std::size_t, std::size_t>> first_multibyte_character(
    const std::string& text) {
    std::size_t length = 1;
    for (std::size_t at = 1; at < text.size(); at += length) {
        length = 1;
        if ((static_cast<unsigned char>(text[at]) & 0xC0) != 0xC0) continue;  // not a lead byte
        while (at + length < text.size() &&
               (static_cast<unsigned char>(text[at + length]) & 0xC0) == 0x80)
            ++length;
        if (text.compare(at, length, "\xEF\xBF\xBD") != 0) return std::make_pair(at, length);
    }
    return std::nullopt;
}

// High-temperature samples from the full vocabulary hold multi-byte characters: stops made of or
// ending with one still cut exactly, and every streamed piece is whole characters.
TEST(EngineStopStrings, MultiByteCharactersAndSamplingWithStreaming) {
    Engine engine = make_mini_engine();
    GenerationRequest request = text_request("Le café", 40);
    request.sampling.temperature = 1.5f;
    // The model rarely writes anything but ASCII: favour the tokens of some accented, CJK and
    // punctuation characters (whole characters and the byte tokens that split them).
    for (TokenId token : mini_tokenizer()->encode("é ü ñ — ’ 日本語 €")) {
        const std::string_view bytes = mini_tokenizer()->token_bytes(token);
        const bool non_ascii = std::any_of(bytes.begin(), bytes.end(), [](char c) {
            return static_cast<unsigned char>(c) >= 0x80;
        });
        const bool listed =
            std::any_of(request.sampling.logit_bias.begin(), request.sampling.logit_bias.end(),
                        [&](const auto& bias) { return bias.first == token; });
        if (non_ascii && !listed) request.sampling.logit_bias.emplace_back(token, 12.0f);
    }
    std::vector<std::shared_ptr<RequestHandle>> free_runs;
    for (std::uint64_t seed = 1; seed <= 16; ++seed) {
        request.sampling.seed = seed;
        free_runs.push_back(engine.submit(request));
    }
    std::vector<StopCase> cases;
    for (std::size_t i = 0; i < free_runs.size(); ++i) {
        const SequenceResult free_run = drain(*free_runs[i]).result.sequences.at(0);
        const std::string& text = free_run.text;
        EXPECT_TRUE(valid_utf8(text));
        const auto character = first_multibyte_character(text);
        if (!character || cases.size() >= 6) continue;
        const auto [at, length] = *character;
        request.sampling.seed = i + 1;
        cases.push_back({request, {text.substr(at, length)}, tokens_of(free_run), text});
        cases.push_back({request, {text.substr(at - 1, length + 1)}, tokens_of(free_run), text});
    }
    ASSERT_FALSE(cases.empty()) << "no sample held a multi-byte character";
    expect_stops_match_reference(engine, cases);
    expect_pool_whole(engine);
}

// Several samples with stops, streamed: per sample, the pieces are whole characters and add up to
// the final text; a non-streamed run with the same seed gives the same texts.
TEST(EngineStreaming, StreamedTextEqualsFinalTextPerSample) {
    Engine engine = make_mini_engine();
    GenerationRequest request = text_request("In the morning, the", 40);
    request.sampling.temperature = 1.2f;
    request.sampling.seed = 99;
    request.n = 3;
    request.stop.stop = {".", " and"};
    const Outcome streamed = drain(*engine.submit(request));
    const RequestResult waited = engine.submit(request)->wait();
    ASSERT_EQ(streamed.result.sequences.size(), 3u);
    for (const SequenceResult& sequence : streamed.result.sequences) {
        SCOPED_TRACE("sample " + std::to_string(sequence.index));
        std::string text;
        Tokens tokens;
        if (streamed.events.contains(sequence.index)) {
            for (const StreamEvent& event : streamed.events.at(sequence.index)) {
                EXPECT_TRUE(valid_utf8(event.text));
                text += event.text;
                for (const GeneratedToken& generated : event.tokens)
                    tokens.push_back(generated.token);
            }
        }
        EXPECT_EQ(text, sequence.text);
        EXPECT_EQ(tokens, tokens_of(sequence));
        EXPECT_EQ(waited.sequences.at(sequence.index).text, sequence.text);
        EXPECT_EQ(tokens_of(waited.sequences.at(sequence.index)), tokens_of(sequence));
        if (sequence.finish_reason == FinishReason::kStop) {
            EXPECT_TRUE(sequence.matched_stop == "." || sequence.matched_stop == " and");
            const std::string decoded = mini_tokenizer()->decode(tokens_of(sequence));
            EXPECT_TRUE(decoded.starts_with(sequence.text + sequence.matched_stop));
        }
    }
}

// A stop token id ends the sample with the token kept in `tokens` but not in the text, and the
// text held back for a possible stop string is still delivered; EOS likewise.
TEST(EngineStopTokens, StopTokenAndEosKeepHeldBackText) {
    Engine engine = make_mini_engine();
    const GenerationRequest request = text_request("The jury said", 30);
    const Tokens free_tokens = tokens_of(run(engine, request).sequences.at(0));
    // The first token from the fourth on that did not occur before: the stop token.
    std::size_t stop_at = 3;
    while (stop_at < free_tokens.size() &&
           std::find(free_tokens.begin(), free_tokens.begin() + stop_at, free_tokens[stop_at]) !=
               free_tokens.begin() + stop_at)
        ++stop_at;
    ASSERT_LT(stop_at, free_tokens.size());
    const Tokens before(free_tokens.begin(), free_tokens.begin() + stop_at);

    GenerationRequest stopping = request;
    stopping.stop.stop_token_ids = {free_tokens[stop_at]};
    // A stop string that the last piece starts and nothing completes: that piece is held back
    // when the stop token arrives.
    stopping.stop.stop = {mini_tokenizer()->decode(Tokens{before.back()}) + "\x01"};
    const SequenceResult sequence = run(engine, stopping).sequences.at(0);
    EXPECT_EQ(sequence.finish_reason, FinishReason::kStop);
    ASSERT_TRUE(sequence.matched_stop_token.has_value());
    EXPECT_EQ(*sequence.matched_stop_token, free_tokens[stop_at]);
    EXPECT_TRUE(sequence.matched_stop.empty());
    Tokens expected = before;
    expected.push_back(free_tokens[stop_at]);
    EXPECT_EQ(tokens_of(sequence), expected);
    EXPECT_EQ(sequence.text, mini_tokenizer()->decode(before));

    // EOS forced right after min_new_tokens: the text of the tokens before it is all delivered.
    const TokenId eos = *mini_model()->config().eos_token_id;
    GenerationRequest eos_request = request;
    eos_request.stop.ignore_eos = false;
    eos_request.stop.min_new_tokens = 4;
    eos_request.sampling.logit_bias = {{eos, 100.0f}};
    const Tokens eos_free = [&] {
        GenerationRequest probe = eos_request;
        probe.sampling.logit_bias.clear();
        probe.stop.max_new_tokens = 4;
        return tokens_of(run(engine, probe).sequences.at(0));
    }();
    eos_request.stop.stop = {mini_tokenizer()->decode(Tokens{eos_free.back()}) + "\x01"};
    const SequenceResult eos_sequence = run(engine, eos_request).sequences.at(0);
    EXPECT_EQ(eos_sequence.finish_reason, FinishReason::kEos);
    ASSERT_TRUE(eos_sequence.matched_stop_token.has_value());
    EXPECT_EQ(*eos_sequence.matched_stop_token, eos);
    Tokens expected_eos = eos_free;
    expected_eos.push_back(eos);
    EXPECT_EQ(tokens_of(eos_sequence), expected_eos);
    EXPECT_EQ(eos_sequence.text, mini_tokenizer()->decode(eos_free));

    // A stop string complete before EOS but pending behind an earlier-starting longer one is
    // decided when EOS ends the sample: it, not EOS, is what ended it.
    const std::string eos_text = mini_tokenizer()->decode(eos_free);
    ASSERT_GE(eos_text.size(), 3u);
    const std::vector<std::string> pending_stops = {eos_text.substr(eos_text.size() - 3) + "\x01",
                                                    eos_text.substr(eos_text.size() - 1)};
    const auto expected_stop = first_stop(eos_text, pending_stops);
    ASSERT_TRUE(expected_stop.has_value());
    eos_request.stop.stop = pending_stops;
    const SequenceResult pending = run(engine, eos_request).sequences.at(0);
    EXPECT_EQ(pending.finish_reason, FinishReason::kStop);
    EXPECT_EQ(pending.text, expected_stop->first);
    EXPECT_EQ(pending.matched_stop, expected_stop->second);
    EXPECT_FALSE(pending.matched_stop_token.has_value());

    // ignore_eos: EOS does not end the sample.
    eos_request.stop.ignore_eos = true;
    eos_request.stop.stop.clear();
    const SequenceResult ignored = run(engine, eos_request).sequences.at(0);
    EXPECT_EQ(ignored.finish_reason, FinishReason::kLength);
    EXPECT_EQ(static_cast<int>(ignored.tokens.size()), eos_request.stop.max_new_tokens);
    expect_pool_whole(engine);
}

// --- Edge cases --------------------------------------------------------------------------------

TEST(EngineEdgeCases, MaxNewTokensZeroAndOne) {
    REQUIRE_TINY_MODEL();
    std::mt19937 rng(4);
    Engine engine(tiny, nullptr, pool_options(*tiny, 2));
    GenerationRequest request;
    request.prompt = random_prompt(rng, 20, tiny->config().vocab_size);
    request.stop.ignore_eos = true;
    request.sampling.temperature = 0.0f;
    request.n = 2;
    request.stop.max_new_tokens = 0;
    const RequestResult zero = run(engine, request);
    ASSERT_EQ(zero.sequences.size(), 2u);
    for (const SequenceResult& sequence : zero.sequences) {
        EXPECT_TRUE(sequence.tokens.empty());
        EXPECT_EQ(sequence.finish_reason, FinishReason::kLength);
    }
    EXPECT_EQ(zero.completion_tokens, 0);
    EXPECT_EQ(zero.prompt_tokens, 20);

    request.stop.max_new_tokens = 1;
    const RequestResult one = run(engine, request);
    request.stop.max_new_tokens = 5;
    const RequestResult five = run(engine, request);
    for (int s = 0; s < 2; ++s) {
        ASSERT_EQ(one.sequences[s].tokens.size(), 1u);
        EXPECT_EQ(one.sequences[s].finish_reason, FinishReason::kLength);
        EXPECT_EQ(one.sequences[s].tokens[0].token, five.sequences[s].tokens.at(0).token);
    }
    expect_pool_whole(engine);
}

// A prompt one short of the context gets exactly one token; asking for more is refused.
TEST(EngineEdgeCases, PromptThatFillsTheContext) {
    REQUIRE_TINY_MODEL();
    const auto& config = tiny->config();
    std::mt19937 rng(5);
    Engine engine(tiny, nullptr, pool_options(*tiny, 2));
    GenerationRequest request;
    request.prompt = random_prompt(rng, config.n_positions - 1, config.vocab_size);
    request.stop.max_new_tokens = 1;
    request.stop.ignore_eos = true;
    request.sampling.temperature = 0.0f;
    const RequestResult result = run(engine, request);
    EXPECT_EQ(result.sequences.at(0).tokens.size(), 1u);
    EXPECT_EQ(result.sequences.at(0).finish_reason, FinishReason::kLength);
    // The same token as a direct forward pass picks.
    const std::vector<float> logits = full_logits(*tiny, request.prompt);
    const auto last = std::span<const float>(logits).last(config.vocab_size);
    EXPECT_EQ(result.sequences.at(0).tokens[0].token,
              std::max_element(last.begin(), last.end()) - last.begin());

    request.stop.max_new_tokens = 2;
    expect_error([&] { engine.submit(request); }, "max_new_tokens");
    request.prompt.push_back(0);
    request.stop.max_new_tokens = 0;
    expect_error([&] { engine.submit(request); }, "prompt");
    expect_pool_whole(engine);
}

// An empty prompt is refused (callers prepend BOS themselves); a BOS-only prompt generates.
TEST(EngineEdgeCases, EmptyPromptIsRefusedBosOnlyPromptWorks) {
    Engine engine = make_mini_engine();
    GenerationRequest request = text_request("", 5);
    ASSERT_TRUE(request.prompt.empty());
    EXPECT_EQ(expect_error([&] { engine.submit(request); }, "prompt"), ErrorCode::kInvalidArgument);
    const auto bos = mini_model()->config().bos_token_id;
    ASSERT_TRUE(bos.has_value());
    request.prompt = {*bos};
    const RequestResult result = run(engine, request);
    EXPECT_EQ(result.sequences.at(0).tokens.size(), 5u);
    EXPECT_EQ(result.prompt_tokens, 1);
}

// Temperature 0 is greedy whatever top_p / top_k / seed say.
TEST(EngineEdgeCases, TemperatureZeroIgnoresTopPAndSeed) {
    Engine engine = make_mini_engine();
    const GenerationRequest greedy = text_request("The jury said", 20);
    const Tokens expected = tokens_of(run(engine, greedy).sequences.at(0));
    for (const float top_p : {0.05f, 0.5f}) {
        GenerationRequest request = greedy;
        request.sampling.top_p = top_p;
        request.sampling.top_k = 3;
        request.sampling.seed = static_cast<std::uint64_t>(top_p * 1000);
        EXPECT_EQ(tokens_of(run(engine, request).sequences.at(0)), expected) << top_p;
    }
}

TEST(EngineValidation, ErrorsNameTheField) {
    REQUIRE_TINY_MODEL();
    const auto& config = tiny->config();
    EngineOptions options = pool_options(*tiny, 1);
    options.max_samples_per_request = 4;
    Engine engine(tiny, nullptr, options);
    GenerationRequest good;
    good.prompt = {1, 2, 3};
    good.stop.max_new_tokens = 4;
    const auto submit_with = [&](auto change) {
        GenerationRequest request = good;
        change(request);
        engine.submit(request);
    };
    const auto expect_invalid = [&](const std::string& param, auto change) {
        EXPECT_EQ(expect_error([&] { submit_with(change); }, param), ErrorCode::kInvalidArgument)
            << param;
    };
    expect_invalid("prompt", [&](GenerationRequest& r) { r.prompt = {1, config.vocab_size}; });
    expect_invalid("prompt", [&](GenerationRequest& r) { r.prompt = {-1}; });
    expect_invalid("top_p", [&](GenerationRequest& r) { r.sampling.top_p = 0.0f; });
    expect_invalid("temperature", [&](GenerationRequest& r) { r.sampling.temperature = -1.0f; });
    expect_invalid("n", [&](GenerationRequest& r) { r.n = 0; });
    expect_invalid("n", [&](GenerationRequest& r) { r.n = 5; });
    expect_invalid("stop", [&](GenerationRequest& r) { r.stop.stop = {"x"}; });  // no tokenizer
    expect_invalid("max_new_tokens", [&](GenerationRequest& r) { r.stop.max_new_tokens = -1; });
    // Four samples of a full context cannot fit a pool of one context.
    expect_invalid("n", [&](GenerationRequest& r) {
        r.n = 4;
        r.stop.max_new_tokens = config.n_positions - 3;
    });
    EXPECT_NO_THROW(run(engine, good));

    Engine text_engine = make_mini_engine();
    GenerationRequest text = text_request("Hi", 3);
    text.stop.stop = {"\xc3"};  // half a character
    EXPECT_EQ(expect_error([&] { text_engine.submit(text); }, "stop"), ErrorCode::kInvalidArgument);
}

TEST(EngineValidation, RejectsUnusableOptions) {
    REQUIRE_TINY_MODEL();
    const auto make = [&](auto change) {
        EngineOptions options = pool_options(*tiny, 1);
        change(options);
        Engine engine(tiny, nullptr, options);
    };
    const auto expect_refused = [&](auto change) {
        try {
            make(change);
            ADD_FAILURE() << "options accepted";
        } catch (const Error& error) {
            EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument) << error.what();
        }
    };
    expect_refused([](EngineOptions& o) { o.max_step_tokens = 0; });
    expect_refused([](EngineOptions& o) { o.max_running_sequences = 0; });
    expect_refused([](EngineOptions& o) { o.kv_block_tokens = 0; });
    expect_refused([](EngineOptions& o) { o.max_samples_per_request = 0; });
    expect_refused([](EngineOptions& o) { o.max_waiting_requests = 0; });
    expect_refused([&](EngineOptions& o) { o.kv_cache_bytes = kv_bytes(*tiny, 1); });
}

// More samples than running slots and a step budget below them still generate correctly.
TEST(EngineScheduling, RequestWiderThanTheBatchStillRuns) {
    REQUIRE_TINY_MODEL();
    std::mt19937 rng(6);
    EngineOptions options = pool_options(*tiny, 4);
    options.max_running_sequences = 2;
    options.max_step_tokens = 4;
    options.max_samples_per_request = 8;
    Engine engine(tiny, nullptr, options);
    GenerationRequest request;
    request.prompt = random_prompt(rng, 10, tiny->config().vocab_size);
    request.stop.max_new_tokens = 5;
    request.stop.ignore_eos = true;
    request.n = 8;
    request.sampling.seed = 3;
    const RequestResult result = run(engine, request);
    ASSERT_EQ(result.sequences.size(), 8u);
    for (const SequenceResult& sequence : result.sequences) {
        EXPECT_EQ(sequence.finish_reason, FinishReason::kLength);
        EXPECT_EQ(sequence.tokens.size(), 5u);
    }
    expect_pool_whole(engine);
}

// --- Scheduling --------------------------------------------------------------------------------

// With a step budget of 16 tokens a long prompt is prefilled in chunks while an earlier request
// keeps decoding one token per step.
TEST(EngineScheduling, ChunkedPrefillDoesNotStallDecoding) {
    constexpr int kStepTokens = 16;
    EngineOptions options;
    options.max_step_tokens = kStepTokens;
    Engine engine = make_mini_engine(options);
    const int context = mini_model()->config().n_positions;
    GenerationRequest decoding = text_request("The jury said", 0);
    decoding.stop.max_new_tokens = context - static_cast<int>(decoding.prompt.size());
    GenerationRequest long_prompt;
    std::mt19937 rng(12);
    long_prompt.prompt = random_prompt(rng, context - 60, mini_model()->config().vocab_size);
    long_prompt.stop.max_new_tokens = 1;

    auto decoder = engine.submit(decoding);
    // Tokens the decoder streamed, waiting up to `timeout` for the first event.
    const auto decoder_tokens = [&](milliseconds timeout) {
        int tokens = 0;
        while (auto event = decoder->next_event(timeout)) {
            tokens += static_cast<int>(event->tokens.size());
            timeout = milliseconds(0);
        }
        return tokens;
    };
    ASSERT_GT(decoder_tokens(kHangLimit), 0) << "the decoder never started";
    decoder_tokens(milliseconds(0));
    const EngineStats before = engine.stats();
    const RequestResult prefilled = engine.submit(long_prompt)->wait();
    const int during = decoder_tokens(milliseconds(0));
    const EngineStats after = engine.stats();
    const int chunks = static_cast<int>(long_prompt.prompt.size()) / kStepTokens;
    EXPECT_EQ(prefilled.sequences.at(0).tokens.size(), 1u);
    EXPECT_GE(during, chunks - 2) << "the decoder waited for the long prefill";
    EXPECT_GE(after.steps - before.steps, static_cast<std::uint64_t>(chunks));
    EXPECT_LE(after.step_tokens_total - before.step_tokens_total,
              (after.steps - before.steps) * kStepTokens)
        << "a step went over its token budget";
    decoder->cancel();
    decoder->wait();
}

// FCFS: a request that must wait for KV space is not overtaken by a smaller one behind it.
TEST(EngineScheduling, FirstComeFirstServedWhenThePoolIsFull) {
    REQUIRE_TINY_MODEL();
    const auto& config = tiny->config();
    const int context_blocks = (config.n_positions + kBlockTokens - 1) / kBlockTokens;
    EngineOptions options;
    options.kv_cache_bytes = kv_bytes(*tiny, context_blocks + 2);
    Engine engine(tiny, nullptr, options);
    std::mt19937 rng(13);
    const auto request_of = [&](int prompt, int new_tokens) {
        GenerationRequest request;
        request.prompt = random_prompt(rng, prompt, config.vocab_size);
        request.stop.max_new_tokens = new_tokens;
        request.stop.ignore_eos = true;
        return request;
    };
    const int big_new = config.n_positions - 10;
    // The engine times a request from when submit() takes it, somewhere between `before` and
    // `after`; the checks below allow exactly that uncertainty (submit can take milliseconds on a
    // loaded machine under ASan).
    struct Submitted {
        Clock::time_point before, after;
        std::shared_ptr<RequestHandle> handle;
    };
    const auto submit = [&](GenerationRequest request) {
        Submitted s{Clock::now(), {}, nullptr};
        s.handle = engine.submit(std::move(request));
        s.after = Clock::now();
        return s;
    };
    Submitted first = submit(request_of(10, big_new));   // takes most of the pool
    Submitted second = submit(request_of(10, big_new));  // must wait for `first`
    Submitted small = submit(request_of(4, 4));          // would fit now, but is behind `second`
    const RequestResult r1 = first.handle->wait();
    const RequestResult r2 = second.handle->wait();
    const RequestResult r3 = small.handle->wait();
    const auto at = [](Clock::time_point before, double ms) {
        return before + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double, std::milli>(ms));
    };
    const double first_total = r1.timing.queue_ms + r1.timing.prefill_ms + r1.timing.decode_ms;
    const auto slack = milliseconds(1);  // rounding of the reported durations
    // `second` started no earlier than `first` finished, and `small` no earlier than `second`.
    EXPECT_GE(at(second.after, r2.timing.queue_ms) + slack, at(first.before, first_total));
    EXPECT_GE(at(small.after, r3.timing.queue_ms) + slack, at(second.before, r2.timing.queue_ms))
        << "the small request jumped the queue";
    EXPECT_EQ(r3.sequences.at(0).tokens.size(), 4u);
    expect_pool_whole(engine);
}

// --- Cancellation, deadlines, queue bound, shutdown --------------------------------------------

TEST(EngineLifecycle, CancelEndsWithinAStepAndFreesBlocks) {
    Engine engine = make_mini_engine();
    const int context = mini_model()->config().n_positions;
    GenerationRequest request = text_request("The jury said", context - 10);
    request.n = 2;
    request.sampling.temperature = 1.0f;
    request.sampling.seed = 1;
    auto handle = engine.submit(request);
    ASSERT_TRUE(handle->next_event(kHangLimit).has_value());
    const std::uint64_t steps_at_cancel = engine.stats().steps;
    handle->cancel();
    EXPECT_TRUE(handle->cancel_requested());
    const RequestResult result = drain(*handle).result;
    const EngineStats stats = engine.stats();
    EXPECT_LE(stats.steps, steps_at_cancel + 2);
    for (const SequenceResult& sequence : result.sequences) {
        EXPECT_EQ(sequence.finish_reason, FinishReason::kCancelled);
        EXPECT_LT(static_cast<int>(sequence.tokens.size()), request.stop.max_new_tokens);
        EXPECT_EQ(sequence.text, mini_tokenizer()->decode(tokens_of(sequence)));
    }
    EXPECT_EQ(stats.requests_cancelled, 1u);
    expect_pool_whole(engine);
}

// A queued request (no room to run yet) is cancelled or timed out without waiting for the running
// one to finish.
TEST(EngineLifecycle, QueuedRequestsCancelAndTimeOutPromptly) {
    EngineOptions options;
    options.max_running_sequences = 1;
    Engine engine = make_mini_engine(options);
    const int context = mini_model()->config().n_positions;
    auto running = engine.submit(text_request("The jury said", context - 10));
    ASSERT_TRUE(running->next_event(kHangLimit).has_value());
    auto queued = engine.submit(text_request("A queued request", 5));
    GenerationRequest expiring = text_request("A request with a deadline", 5);
    expiring.deadline = Clock::now() + milliseconds(20);
    auto timed = engine.submit(expiring);
    queued->cancel();
    const RequestResult cancelled = queued->wait();
    const RequestResult timed_out = timed->wait();
    EXPECT_FALSE(running->finished()) << "the queued requests waited for the running one";
    EXPECT_EQ(cancelled.sequences.at(0).finish_reason, FinishReason::kCancelled);
    EXPECT_TRUE(cancelled.sequences.at(0).tokens.empty());
    EXPECT_EQ(timed_out.sequences.at(0).finish_reason, FinishReason::kTimeout);
    EXPECT_TRUE(timed_out.sequences.at(0).tokens.empty());
    running->cancel();
    EXPECT_EQ(running->wait().sequences.at(0).finish_reason, FinishReason::kCancelled);
    const EngineStats stats = engine.stats();
    EXPECT_EQ(stats.requests_cancelled, 2u);
    EXPECT_EQ(stats.requests_timed_out, 1u);
    expect_pool_whole(engine);
}

TEST(EngineLifecycle, DeadlinesGiveTimeoutWithTheTokensSoFar) {
    Engine engine = make_mini_engine();
    const int context = mini_model()->config().n_positions;
    GenerationRequest past = text_request("The jury said", 20);
    past.deadline = Clock::now() - milliseconds(1);
    const RequestResult expired = run(engine, past);
    EXPECT_EQ(expired.sequences.at(0).finish_reason, FinishReason::kTimeout);
    EXPECT_TRUE(expired.sequences.at(0).tokens.empty());

    // A deadline of three times what 20 tokens take here: the request gets some tokens, and
    // would need many times longer for all of them.
    const auto start = Clock::now();
    run(engine, text_request("The jury said", 20));
    const auto twenty_tokens = Clock::now() - start;
    GenerationRequest soon = text_request("The jury said", context - 10);
    soon.deadline = Clock::now() + 3 * twenty_tokens;
    const Outcome outcome = drain(*engine.submit(soon));
    const SequenceResult& sequence = outcome.result.sequences.at(0);
    EXPECT_EQ(sequence.finish_reason, FinishReason::kTimeout);
    EXPECT_GT(sequence.tokens.size(), 0u);
    EXPECT_LT(static_cast<int>(sequence.tokens.size()), soon.stop.max_new_tokens);
    EXPECT_EQ(sequence.text, mini_tokenizer()->decode(tokens_of(sequence)));
    EXPECT_GE(engine.stats().requests_timed_out, 2u);
    expect_pool_whole(engine);
}

TEST(EngineLifecycle, FullQueueIsResourceExhausted) {
    EngineOptions options;
    options.max_running_sequences = 1;
    options.max_waiting_requests = 2;
    Engine engine = make_mini_engine(options);
    const int context = mini_model()->config().n_positions;
    std::vector<std::shared_ptr<RequestHandle>> handles;
    std::optional<ErrorCode> refused;
    for (int i = 0; i < 6 && !refused; ++i) {
        try {
            handles.push_back(engine.submit(text_request("The jury said", context - 10)));
        } catch (const Error& error) {
            refused = error.code();
        }
    }
    ASSERT_TRUE(refused.has_value()) << "the queue never filled";
    EXPECT_EQ(*refused, ErrorCode::kResourceExhausted);
    // One may be running, two waiting; the next one is refused.
    EXPECT_GE(handles.size(), 2u);
    EXPECT_LE(handles.size(), 3u);
    for (auto& handle : handles) handle->cancel();
    for (auto& handle : handles)
        EXPECT_EQ(drain(*handle).result.sequences.at(0).finish_reason, FinishReason::kCancelled);
    expect_pool_whole(engine);
}

// Destroying the engine with requests running and queued completes them all as cancelled.
TEST(EngineLifecycle, DestructionCancelsRequestsInFlight) {
    const int context = mini_model()->config().n_positions;
    std::vector<std::shared_ptr<RequestHandle>> handles;
    {
        EngineOptions options;
        options.max_running_sequences = 2;
        auto engine =
            std::make_unique<Engine>(mini_model(), mini_tokenizer(), mini_options(options));
        for (int i = 0; i < 5; ++i)
            handles.push_back(engine->submit(text_request("The jury said", context - 10)));
        ASSERT_TRUE(handles[0]->next_event(kHangLimit).has_value());
        auto destroyed = std::async(std::launch::async, [&] { engine.reset(); });
        ASSERT_EQ(destroyed.wait_for(kHangLimit), std::future_status::ready) << "destructor hung";
    }
    for (auto& handle : handles) {
        const RequestResult result = drain(*handle).result;
        EXPECT_EQ(result.sequences.at(0).finish_reason, FinishReason::kCancelled);
    }
}

}  // namespace
}  // namespace llmserve::engine
