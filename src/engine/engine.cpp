#include "engine/engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>

#include "common/error.h"
#include "common/memory.h"
#include "engine/constrained_decoding.h"
#include "engine/kv_cache.h"
#include "engine/sampling/logits_processor.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sequence_tokens.h"
#include "engine/sampling/stop_matcher.h"
#include "engine/sampling/vector_math.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::engine {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

int ceil_div(int a, int b) {
    return (a + b - 1) / b;
}

// Keys and values of one token stream: the KV blocks it holds and how many of its tokens are in
// them.
struct KvSequence {
    std::vector<int> blocks;
    int cached = 0;
};

// One of a request's n samples, from the end of the prompt's prefill to its finish.
struct Sample {
    Sample(int index, std::uint64_t seed, const GenerationRequest& request,
           const tokenizer::Tokenizer* tokenizer, const grammar::Vocabulary* vocabulary)
        : history(request.prompt, request.sampling.no_repeat_ngram_size),
          sampler(seed),
          stop_matcher(request.stop.stop) {
        result.index = index;
        if (tokenizer != nullptr) detokenizer.emplace(*tokenizer);
        if (request.constraint) constrained.emplace(*request.constraint, *vocabulary);
    }

    KvSequence kv;
    SequenceTokens history;
    Sampler sampler;
    std::optional<tokenizer::StreamingDetokenizer> detokenizer;
    StopMatcher stop_matcher;
    std::optional<ConstrainedSample> constrained;  // the request's output constraint, if any
    SequenceResult result;
    std::vector<GeneratedToken> unsent_tokens;  // generated since the last stream event
    Clock::time_point last_token;               // when its latest token was sampled
    bool finished = false;
};

struct ActiveRequest {
    std::shared_ptr<RequestHandle> handle;
    GenerationRequest request;
    std::uint64_t seed = 0;
    int reserved_blocks = 0;  // worst-case KV blocks this request may hold (admission control)
    Clock::time_point submitted, scheduled, first_token, last_token;
    bool admitted = false;  // left the queue: its reservation counts against the pool
    bool started = false;

    // Prefill of the shared prompt; its blocks pass to the samples when it is done.
    KvSequence prompt_kv;
    std::uint64_t prefix_hash =
        0;  // chain hash of the prompt's full blocks published or found so far
    int published_blocks = 0;
    std::vector<std::optional<float>> prompt_logprobs;
    std::vector<std::unique_ptr<Sample>> samples;  // empty until the prompt is prefilled
    std::string error;  // why the engine ended it early (finish reason kError), if it did
    ErrorCode error_code = ErrorCode::kInternal;

    bool prefilling() const { return samples.empty(); }
    bool finished() const {
        return !samples.empty() && std::all_of(samples.begin(), samples.end(),
                                               [](const auto& s) { return s->finished; });
    }
};

}  // namespace

struct Engine::State {
    std::shared_ptr<const model::Model> model;
    std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
    EngineOptions options;
    std::vector<TokenId> eos_ids;
    // The tokenizer's vocabulary for constrained requests, built at the first one.
    std::once_flag vocabulary_once;
    std::unique_ptr<grammar::Vocabulary> vocabulary;
    std::unique_ptr<backend::KvStorage> kv_storage;
    std::unique_ptr<KvBlockManager> blocks;
    std::unique_ptr<model::Workspace> workspace;
    LogitsProcessor processor;
    std::unique_ptr<backend::HostBuffer> logits;  // [workspace rows, vocab]
    std::vector<float> row_scratch;

    std::mutex mutex;  // guards waiting, stopping, stats
    std::condition_variable wake;
    std::deque<std::unique_ptr<ActiveRequest>> waiting;
    bool stopping = false;
    EngineStats stats;
    std::atomic<std::uint64_t> next_id{1};

    std::vector<std::unique_ptr<ActiveRequest>> active;  // engine thread only
    int reserved_blocks = 0;                             // engine thread only
    std::vector<ActiveRequest*> in_step;                 // requests with rows in this step
    std::thread thread;

    void check_first_forward();
    void run();
    bool step();
    void fail_request(ActiveRequest& request, std::string error, ErrorCode code);
    void admit();
    void expire_and_cancel(Clock::time_point now);
    void abort_request(ActiveRequest& request, FinishReason reason);
    void finish_sample(ActiveRequest& request, Sample& sample, FinishReason reason);
    void retire_finished();
    void retire(std::vector<std::unique_ptr<ActiveRequest>>& done);
    void release(KvSequence& kv);
    void ensure_block_for(KvSequence& kv, int position);
    void start_samples(ActiveRequest& request, std::span<const float> last_prompt_logits);
    void accept_token(ActiveRequest& request, Sample& sample, std::span<float> logits);
    void publish_prompt_blocks(ActiveRequest& request);
    void complete(ActiveRequest& request);
};

namespace {

void check_options(const EngineOptions& options) {
    const auto at_least_one = [](int value, std::string_view name) {
        if (value < 1)
            fail(ErrorCode::kInvalidArgument, "engine option {} must be at least 1, got {}", name,
                 value);
    };
    at_least_one(options.max_running_sequences, "max_running_sequences");
    at_least_one(options.max_step_tokens, "max_step_tokens");
    at_least_one(options.max_waiting_requests, "max_waiting_requests");
    at_least_one(options.kv_block_tokens, "kv_block_tokens");
    at_least_one(options.max_samples_per_request, "max_samples_per_request");
}

}  // namespace

KvCacheGeometry kv_cache_geometry(const model::ModelConfig& config, int block_tokens,
                                  backend::KvFormat format) {
    return {static_cast<std::size_t>(config.n_layer) * 2 * block_tokens * config.kv_dim() *
                backend::element_bytes(format),
            ceil_div(config.n_positions, block_tokens)};
}

Engine::Engine(std::shared_ptr<const model::Model> model,
               std::shared_ptr<const tokenizer::Tokenizer> tokenizer, EngineOptions options)
    : state_(std::make_unique<State>()) {
    check_options(options);
    State& s = *state_;
    s.model = std::move(model);
    s.tokenizer = std::move(tokenizer);
    s.options = options;
    const model::ModelConfig& config = s.model->config();
    for (int id : config.eos_token_ids) s.eos_ids.push_back(id);
    for (int id : s.model->generation_defaults().eos_token_ids)
        if (std::find(s.eos_ids.begin(), s.eos_ids.end(), id) == s.eos_ids.end())
            s.eos_ids.push_back(id);

    const int block_tokens = options.kv_block_tokens;
    const KvCacheGeometry geometry = kv_cache_geometry(config, block_tokens, options.kv_format);
    const std::size_t bytes_per_block = geometry.block_bytes;
    const int context_blocks = geometry.context_blocks;
    std::size_t wanted_blocks;
    if (options.kv_cache_bytes > 0) {
        wanted_blocks = options.kv_cache_bytes / bytes_per_block;
    } else {  // every running sequence at full context, but at most 1 GiB
        constexpr std::size_t kDefaultCap = std::size_t{1} << 30;
        wanted_blocks =
            std::min(static_cast<std::size_t>(options.max_running_sequences) * context_blocks,
                     kDefaultCap / bytes_per_block);
    }
    // Block indices are ints; a pool that large would not fit in memory anyway.
    const int num_blocks =
        static_cast<int>(std::min<std::size_t>(wanted_blocks, std::numeric_limits<int>::max()));
    if (num_blocks < context_blocks)
        fail(ErrorCode::kInvalidArgument,
             "KV cache of {} bytes holds {} blocks of {} tokens; one full context of {} tokens "
             "needs {} blocks",
             options.kv_cache_bytes, num_blocks, block_tokens, config.n_positions, context_blocks);
    s.kv_storage = s.model->backend().allocate_kv(config.n_layer, num_blocks, block_tokens,
                                                  config.kv_dim(), options.kv_format);
    s.blocks = std::make_unique<KvBlockManager>(num_blocks, block_tokens);
    // A step holds one decode row per running sample (at most max_running_sequences, or one
    // request's n when it runs alone) plus prefill rows within the token budget.
    const int max_rows = options.max_step_tokens +
                         std::max(options.max_running_sequences, options.max_samples_per_request);
    s.workspace =
        std::make_unique<model::Workspace>(s.model->backend(), config, max_rows, max_rows);
    s.logits =
        s.model->backend().allocate_host(static_cast<std::size_t>(max_rows) * config.vocab_size);
    s.stats.kv_blocks_total = num_blocks;
    s.stats.kv_blocks_free = num_blocks;
    s.check_first_forward();
    release_free_heap_memory();  // what loading the model and tokenizer freed
    s.thread = std::thread([&s] { s.run(); });
}

Engine::~Engine() {
    {
        std::lock_guard lock(state_->mutex);
        state_->stopping = true;
    }
    state_->wake.notify_all();
    state_->thread.join();
}

const model::Model& Engine::model() const {
    return *state_->model;
}
const tokenizer::Tokenizer& Engine::tokenizer() const {
    if (!state_->tokenizer)
        fail(ErrorCode::kUnsupported, "model '{}' has no tokenizer", state_->model->name());
    return *state_->tokenizer;
}

EngineStats Engine::stats() const {
    std::lock_guard lock(state_->mutex);
    return state_->stats;
}

std::shared_ptr<RequestHandle> Engine::submit(GenerationRequest request) {
    State& s = *state_;
    const model::ModelConfig& config = s.model->config();
    if (request.prompt.empty()) fail_param("prompt", "prompt must contain at least one token");
    for (TokenId token : request.prompt)
        if (token < 0 || token >= config.vocab_size)
            fail_param("prompt", "prompt token id {} is outside the vocabulary [0, {})", token,
                       config.vocab_size);
    validate(
        request.sampling, request.stop,
        ModelLimits{config.vocab_size, config.n_positions, static_cast<int>(request.prompt.size()),
                    s.options.max_samples_per_request, request.n});
    if (!request.stop.stop.empty() && !s.tokenizer)
        fail_param("stop", "stop strings need a tokenizer, and model '{}' has none",
                   s.model->name());
    if (request.constraint) {
        if (!s.tokenizer)
            fail_param("constraint",
                       "an output constraint needs a tokenizer, and model '{}' has none",
                       s.model->name());
        std::call_once(s.vocabulary_once, [&s] {
            s.vocabulary =
                std::make_unique<grammar::Vocabulary>(grammar_vocabulary(*s.tokenizer, s.eos_ids));
        });
    }

    auto active = std::make_unique<ActiveRequest>();
    active->handle = std::make_shared<RequestHandle>(s.next_id++);
    active->seed = request.sampling.seed.value_or(random_seed());
    const int prompt = static_cast<int>(request.prompt.size());
    active->reserved_blocks =
        request.n * ceil_div(prompt + request.stop.max_new_tokens, s.blocks->block_tokens());
    if (active->reserved_blocks > s.blocks->total_blocks())
        fail_param("n",
                   "the request needs up to {} KV cache blocks ({} samples of {} + {} tokens); the "
                   "cache has {}",
                   active->reserved_blocks, request.n, prompt, request.stop.max_new_tokens,
                   s.blocks->total_blocks());
    active->request = std::move(request);
    active->submitted = Clock::now();
    auto handle = active->handle;
    {
        std::lock_guard lock(s.mutex);
        if (static_cast<int>(s.waiting.size()) >= s.options.max_waiting_requests)
            fail(ErrorCode::kResourceExhausted, "the request queue is full ({} waiting)",
                 s.waiting.size());
        s.waiting.push_back(std::move(active));
        s.stats.waiting_requests = static_cast<int>(s.waiting.size());
    }
    s.wake.notify_all();
    return handle;
}

// One token through the model in a scratch KV block. Weights holding NaN or infinity would turn
// every request's logits into garbage; such a model is refused before it serves anything.
void Engine::State::check_first_forward() {
    const int vocab = model->config().vocab_size;
    const auto block = blocks->allocate();
    if (!block) fail(ErrorCode::kInternal, "the KV cache has no block for the model check");
    const std::vector<int> table = {*block};
    model::Batch batch;
    batch.tokens = {eos_ids.empty() ? 0 : eos_ids.front()};
    batch.positions = {0};
    batch.row_sequence = {0};
    batch.block_tables = {std::span<const int>(table)};
    batch.logits_rows = {0};
    const std::span<float> row(logits->data(), static_cast<std::size_t>(vocab));
    try {
        model->forward(batch, *kv_storage, *workspace, row);
    } catch (...) {
        blocks->release(*block);
        throw;
    }
    blocks->release(*block);
    if (!detail::finite_or_removed(row) ||
        !(detail::max_value(row) > -std::numeric_limits<float>::infinity())) {
        fail(ErrorCode::kInvalidArgument,
             "model '{}' is refused: its first forward pass gives non-finite logits (NaN or "
             "infinity); its weights are damaged or hold NaN/infinity",
             model->name());
    }
}

// Ends `request` with finish reason kError; its client gets `error`.
void Engine::State::fail_request(ActiveRequest& request, std::string error, ErrorCode code) {
    request.error = std::move(error);
    request.error_code = code;
    abort_request(request, FinishReason::kError);
}

void Engine::State::run() {
    while (true) {
        {
            std::unique_lock lock(mutex);
            wake.wait(lock, [&] { return stopping || !waiting.empty() || !active.empty(); });
            if (stopping) break;
        }
        try {
            step();
        } catch (const std::exception& e) {
            // A failure no single sequence caused (the forward pass, KV bookkeeping): the requests
            // in the step end with the error, the others and later ones go on.
            {
                std::lock_guard lock(mutex);
                ++stats.step_failures;
            }
            const std::string cause = fmt::format("the engine step failed: {}", e.what());
            if (in_step.empty())
                for (auto& request : active) in_step.push_back(request.get());
            for (ActiveRequest* request : in_step)
                if (request->error.empty()) fail_request(*request, cause, ErrorCode::kInternal);
            in_step.clear();
            retire_finished();
        }
    }
    // Shutdown: every request still here ends as cancelled.
    std::deque<std::unique_ptr<ActiveRequest>> left;
    {
        std::lock_guard lock(mutex);
        left.swap(waiting);
    }
    for (auto& request : left) active.push_back(std::move(request));
    for (auto& request : active) abort_request(*request, FinishReason::kCancelled);
    retire_finished();
}

// First come, first served: the oldest waiting request is admitted when its worst-case KV need
// fits; nothing behind it jumps the queue, so no request starves.
void Engine::State::admit() {
    std::lock_guard lock(mutex);
    int running = 0;
    for (const auto& r : active) running += r->request.n;
    while (!waiting.empty()) {
        ActiveRequest& next = *waiting.front();
        if (running + next.request.n > options.max_running_sequences && !active.empty()) break;
        if (reserved_blocks + next.reserved_blocks > blocks->total_blocks()) break;
        reserved_blocks += next.reserved_blocks;
        running += next.request.n;
        next.admitted = true;
        next.scheduled = Clock::now();
        active.push_back(std::move(waiting.front()));
        waiting.pop_front();
    }
    stats.waiting_requests = static_cast<int>(waiting.size());
}

void Engine::State::release(KvSequence& kv) {
    for (int block : kv.blocks) blocks->release(block);
    kv.blocks.clear();
    kv.cached = 0;
}

void Engine::State::ensure_block_for(KvSequence& kv, int position) {
    while (static_cast<int>(kv.blocks.size()) * blocks->block_tokens() <= position) {
        auto block = blocks->allocate();
        if (!block) fail(ErrorCode::kInternal, "KV cache exhausted despite admission control");
        kv.blocks.push_back(*block);
    }
}

// Ends cancelled and expired requests, running or still queued (a queued one must not wait for
// room to run just to be told it is over).
void Engine::State::expire_and_cancel(Clock::time_point now) {
    const auto reason_to_end = [now](const ActiveRequest& request) -> std::optional<FinishReason> {
        if (request.handle->cancel_requested()) return FinishReason::kCancelled;
        if (request.request.deadline && now >= *request.request.deadline)
            return FinishReason::kTimeout;
        return std::nullopt;
    };
    for (auto& request : active)
        if (auto reason = reason_to_end(*request)) abort_request(*request, *reason);

    std::vector<std::unique_ptr<ActiveRequest>> ended;
    std::vector<FinishReason> reasons;
    {
        std::lock_guard lock(mutex);
        for (auto it = waiting.begin(); it != waiting.end();) {
            if (auto reason = reason_to_end(**it)) {
                reasons.push_back(*reason);
                ended.push_back(std::move(*it));
                it = waiting.erase(it);
            } else {
                ++it;
            }
        }
        stats.waiting_requests = static_cast<int>(waiting.size());
    }
    for (std::size_t i = 0; i < ended.size(); ++i) abort_request(*ended[i], reasons[i]);
    retire(ended);
}

// Ends every unfinished sample of `request` with `reason`, keeping what was generated.
void Engine::State::abort_request(ActiveRequest& request, FinishReason reason) {
    release(request.prompt_kv);  // held here only until every sample has started
    if (request.prefilling()) {  // nothing generated yet: the samples finish empty
        for (int i = 0; i < request.request.n; ++i)
            request.samples.push_back(std::make_unique<Sample>(i, derive_seed(request.seed, i),
                                                               request.request, tokenizer.get(),
                                                               vocabulary.get()));
    }
    for (auto& sample : request.samples)
        if (!sample->finished) finish_sample(request, *sample, reason);
}

void Engine::State::finish_sample(ActiveRequest& request, Sample& sample, FinishReason reason) {
    std::string tail;
    if (!sample.stop_matcher.matched()) {
        // Release held-back text; a stop string may still be decided here (e.g. one that waited for
        // a longer one).
        StopMatch flushed =
            sample.stop_matcher.push(sample.detokenizer ? sample.detokenizer->finish() : "");
        tail = std::move(flushed.emit);
        if (!flushed.matched_stop_index) {
            flushed = sample.stop_matcher.finish();
            tail += flushed.emit;
        }
        if (flushed.matched_stop_index) {  // the string was complete before the token came
            sample.result.matched_stop = request.request.stop.stop[*flushed.matched_stop_index];
            sample.result.matched_stop_token.reset();
            reason = FinishReason::kStop;
        }
    }
    sample.result.text += tail;
    sample.result.finish_reason = reason;
    sample.finished = true;
    release(sample.kv);
    if (!tail.empty() || !sample.unsent_tokens.empty())
        request.handle->push_event(
            StreamEvent{sample.result.index, std::move(tail), std::move(sample.unsent_tokens)});
    sample.unsent_tokens.clear();
}

// Hands the prefilled prompt to n samples: sample 0 takes its blocks, the others share the full
// ones and copy the partial last one; each then draws its first token from the same logits with its
// own RNG.
void Engine::State::start_samples(ActiveRequest& request,
                                  std::span<const float> last_prompt_logits) {
    const GenerationRequest& r = request.request;
    // Samples 1..n-1 first, so that the prompt's blocks have exactly one owner at every moment
    // (the request, then sample 0), even when this fails half-way.
    for (int i = 1; i < r.n; ++i) {
        auto sample = std::make_unique<Sample>(i, derive_seed(request.seed, i), r, tokenizer.get(),
                                               vocabulary.get());
        const int prompt = static_cast<int>(r.prompt.size());
        const int full = prompt / blocks->block_tokens();
        for (int b = 0; b < full; ++b) {
            blocks->retain(request.prompt_kv.blocks[b]);
            sample->kv.blocks.push_back(request.prompt_kv.blocks[b]);
        }
        sample->kv.cached = prompt;
        request.samples.push_back(std::move(sample));
        if (full < static_cast<int>(request.prompt_kv.blocks.size())) {
            auto copy = blocks->allocate();
            if (!copy) fail(ErrorCode::kInternal, "KV cache exhausted despite admission control");
            kv_storage->copy_block(request.prompt_kv.blocks[full], *copy);
            request.samples.back()->kv.blocks.push_back(*copy);
        }
    }
    auto first = std::make_unique<Sample>(0, derive_seed(request.seed, 0), r, tokenizer.get(),
                                          vocabulary.get());
    first->kv = std::exchange(request.prompt_kv, KvSequence{});
    request.samples.insert(request.samples.begin(), std::move(first));
    request.first_token = Clock::now();
    for (auto& sample : request.samples) {
        if (r.stop.max_new_tokens == 0) {
            finish_sample(request, *sample, FinishReason::kLength);
            continue;
        }
        row_scratch.assign(last_prompt_logits.begin(), last_prompt_logits.end());
        accept_token(request, *sample, row_scratch);
    }
}

// Samples the next token of `sample` from its raw logits row (processed in place) and applies every
// stop rule.
void Engine::State::accept_token(ActiveRequest& request, Sample& sample, std::span<float> logits) {
    const GenerationRequest& r = request.request;
    GeneratedToken generated;
    std::optional<StepLogprobs> logprobs;
    const int top_n = r.sampling.logprobs.value_or(-1);
    std::vector<float> raw_copy;
    if (!detail::finite_or_removed(logits))
        fail(ErrorCode::kInternal,
             "model '{}' gave non-finite logits (NaN or +infinity) for this sequence after {} "
             "tokens; its weights or activations overflow",
             model->name(), sample.history.tokens().size());
    if (top_n >= 0) raw_copy.assign(logits.begin(), logits.end());
    if (sample.constrained) sample.constrained->mask_logits(logits);
    processor.process(r.sampling, r.stop, eos_ids, sample.history, logits);
    if (!detail::finite_or_removed(logits))
        fail(ErrorCode::kInternal,
             "the logits processors turned finite logits into NaN or +infinity "
             "(repetition_penalty {}, temperature {}, presence_penalty {}, frequency_penalty {})",
             r.sampling.repetition_penalty, r.sampling.temperature, r.sampling.presence_penalty,
             r.sampling.frequency_penalty);
    generated.token = sample.sampler.sample(logits, is_greedy(r.sampling));
    if (top_n >= 0) {
        StepLogprobs step = step_logprobs(raw_copy, generated.token, top_n);
        generated.logprob = step.chosen.logprob;
        generated.top = std::move(step.top);
    }
    const TokenId token = generated.token;
    if (sample.constrained) sample.constrained->accept(token, *tokenizer);
    sample.history.append(token);
    sample.result.tokens.push_back(generated);
    sample.unsent_tokens.push_back(std::move(generated));
    request.last_token = Clock::now();
    if (sample.last_token != Clock::time_point{}) {
        sample.result.inter_token_ms.push_back(ms_between(sample.last_token, request.last_token));
    }
    sample.last_token = request.last_token;
    {
        std::lock_guard lock(mutex);
        ++stats.generated_tokens_total;
    }

    const bool is_eos = std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end();
    if (is_eos && !r.stop.ignore_eos) {
        sample.result.matched_stop_token = token;
        finish_sample(request, sample, FinishReason::kEos);
        return;
    }
    if (std::find(r.stop.stop_token_ids.begin(), r.stop.stop_token_ids.end(), token) !=
        r.stop.stop_token_ids.end()) {
        sample.result.matched_stop_token = token;
        finish_sample(request, sample, FinishReason::kStop);
        return;
    }
    if (sample.detokenizer) {
        auto matched = sample.stop_matcher.push(sample.detokenizer->push(token));
        sample.result.text += matched.emit;
        if (matched.matched_stop_index) {
            sample.result.matched_stop = r.stop.stop[*matched.matched_stop_index];
            if (!matched.emit.empty() || !sample.unsent_tokens.empty())
                request.handle->push_event(StreamEvent{sample.result.index, std::move(matched.emit),
                                                       std::move(sample.unsent_tokens)});
            sample.unsent_tokens.clear();
            finish_sample(request, sample, FinishReason::kStop);
            return;
        }
        if (!matched.emit.empty()) {
            request.handle->push_event(StreamEvent{sample.result.index, std::move(matched.emit),
                                                   std::move(sample.unsent_tokens)});
            sample.unsent_tokens.clear();
        }
    } else {  // no text to wait for: every token is final at once
        request.handle->push_event(
            StreamEvent{sample.result.index, {}, std::move(sample.unsent_tokens)});
        sample.unsent_tokens.clear();
    }
    const int generated_count = static_cast<int>(sample.result.tokens.size());
    const int length = static_cast<int>(r.prompt.size()) + generated_count;
    if (sample.constrained && sample.constrained->complete())
        finish_sample(request, sample, FinishReason::kStop);
    else if (generated_count >= r.stop.max_new_tokens || length >= model->config().n_positions)
        finish_sample(request, sample, FinishReason::kLength);
}

// Registers the prompt's newly completed full blocks in the prefix cache.
void Engine::State::publish_prompt_blocks(ActiveRequest& request) {
    const int block_tokens = blocks->block_tokens();
    const auto& prompt = request.request.prompt;
    while ((request.published_blocks + 1) * block_tokens <= request.prompt_kv.cached) {
        const int b = request.published_blocks;
        std::span<const TokenId> tokens(prompt.data() + b * block_tokens, block_tokens);
        blocks->publish(request.prompt_kv.blocks[b], request.prefix_hash, tokens);
        request.prefix_hash = KvBlockManager::chain_hash(request.prefix_hash, tokens);
        ++request.published_blocks;
    }
}

bool Engine::State::step() {
    in_step.clear();
    admit();
    expire_and_cancel(Clock::now());
    retire_finished();
    if (active.empty()) return false;

    const int block_tokens = blocks->block_tokens();
    model::Batch batch;
    struct RowOwner {
        ActiveRequest* request;
        Sample* sample;  // null for a prefill row
        int prompt_index;
    };
    std::vector<RowOwner> logits_owners;
    std::vector<const KvSequence*> sequences;
    auto add_sequence = [&](const KvSequence& kv) {
        sequences.push_back(&kv);
        return static_cast<int>(sequences.size()) - 1;
    };

    // Decode rows first: one token per running sample.
    for (auto& request : active) {
        if (!request->prefilling() && !request->finished()) in_step.push_back(request.get());
        for (auto& sample : request->samples) {
            if (sample->finished) continue;
            const int position = sample->kv.cached;
            ensure_block_for(sample->kv, position);
            const int seq = add_sequence(sample->kv);
            batch.logits_rows.push_back(static_cast<int>(batch.tokens.size()));
            batch.tokens.push_back(sample->result.tokens.back().token);
            batch.positions.push_back(position);
            batch.row_sequence.push_back(seq);
            logits_owners.push_back({request.get(), sample.get(), -1});
        }
    }
    // Then prefill chunks, oldest request first, within the step's token budget.
    int budget = options.max_step_tokens - static_cast<int>(batch.tokens.size());
    const int logits_capacity = workspace->max_logits_rows();
    for (auto& request : active) {
        if (!request->prefilling() || budget <= 0) continue;
        ActiveRequest& r = *request;
        const int prompt = static_cast<int>(r.request.prompt.size());
        if (!r.started) {
            r.started = true;
            // Reuse cached full blocks of this prompt, leaving at least the last token to compute.
            // Prompt logprobs need the logits of every prompt row, so such prompts are computed
            // whole.
            std::lock_guard lock(mutex);
            while (!r.request.sampling.prompt_logprobs &&
                   (r.published_blocks + 1) * block_tokens < prompt) {
                std::span<const TokenId> tokens(
                    r.request.prompt.data() + r.published_blocks * block_tokens, block_tokens);
                ++stats.prefix_cache_queries;
                auto block = blocks->lookup(r.prefix_hash, tokens);
                if (!block) break;
                ++stats.prefix_cache_hits;
                r.prompt_kv.blocks.push_back(*block);
                r.prompt_kv.cached += block_tokens;
                r.prefix_hash = KvBlockManager::chain_hash(r.prefix_hash, tokens);
                ++r.published_blocks;
            }
            r.prompt_logprobs.assign(r.request.sampling.prompt_logprobs ? prompt : 0, std::nullopt);
        }
        int chunk = std::min(budget, prompt - r.prompt_kv.cached);
        const bool every_row = r.request.sampling.prompt_logprobs;
        const int free_logits = logits_capacity - static_cast<int>(batch.logits_rows.size());
        if (every_row) chunk = std::min(chunk, free_logits);
        if (chunk <= 0 || free_logits <= 0) continue;
        const int first = r.prompt_kv.cached;
        in_step.push_back(&r);
        ensure_block_for(r.prompt_kv, first + chunk - 1);
        const int seq = add_sequence(r.prompt_kv);
        for (int i = 0; i < chunk; ++i) {
            const int position = first + i;
            const bool last = position == prompt - 1;
            if (every_row || last) {
                batch.logits_rows.push_back(static_cast<int>(batch.tokens.size()));
                logits_owners.push_back({&r, nullptr, position});
            }
            batch.tokens.push_back(r.request.prompt[position]);
            batch.positions.push_back(position);
            batch.row_sequence.push_back(seq);
        }
        budget -= chunk;
    }
    if (batch.tokens.empty()) return false;

    std::vector<std::span<const int>> tables;
    for (const KvSequence* kv : sequences) tables.emplace_back(kv->blocks);
    batch.block_tables = std::move(tables);

    const int vocab = model->config().vocab_size;
    model->forward(batch, *kv_storage, *workspace,
                   {logits->data(), batch.logits_rows.size() * static_cast<std::size_t>(vocab)});

    // Advance the cache counters of everything that ran.
    for (auto& request : active) {
        for (auto& sample : request->samples)
            if (!sample->finished) ++sample->kv.cached;
    }
    std::vector<ActiveRequest*> prefill_done;
    for (std::size_t row = 0, seq = 0; row < batch.tokens.size(); ++seq) {
        const KvSequence* kv = sequences[seq];
        std::size_t end = row;
        while (end < batch.tokens.size() && batch.row_sequence[end] == static_cast<int>(seq)) ++end;
        for (auto& request : active) {
            if (&request->prompt_kv == kv) {
                request->prompt_kv.cached += static_cast<int>(end - row);
                publish_prompt_blocks(*request);
            }
        }
        row = end;
    }

    // Each row's sampling is its own request's: a failure there ends only that request.
    for (std::size_t i = 0; i < logits_owners.size(); ++i) {
        const RowOwner& owner = logits_owners[i];
        std::span<float> row(logits->data() + i * vocab, vocab);
        ActiveRequest& r = *owner.request;
        if (!r.error.empty()) continue;
        try {
            if (owner.sample != nullptr) {
                accept_token(r, *owner.sample, row);
                continue;
            }
            const int prompt = static_cast<int>(r.request.prompt.size());
            if (r.request.sampling.prompt_logprobs && owner.prompt_index + 1 < prompt)
                r.prompt_logprobs[owner.prompt_index + 1] =
                    token_logprob(row, r.request.prompt[owner.prompt_index + 1]);
            if (owner.prompt_index == prompt - 1) start_samples(r, row);
        } catch (const Error& e) {
            fail_request(r, e.what(),
                         e.code() == ErrorCode::kInvalidArgument ? e.code() : ErrorCode::kInternal);
        } catch (const std::exception& e) {
            fail_request(r, e.what(), ErrorCode::kInternal);
        }
    }
    in_step.clear();

    {
        std::lock_guard lock(mutex);
        ++stats.steps;
        stats.step_tokens_total += batch.tokens.size();
        stats.step_sequences_total += sequences.size();
        stats.last_batch_sequences = static_cast<int>(sequences.size());
    }
    retire_finished();
    return true;
}

void Engine::State::complete(ActiveRequest& request) {
    RequestResult result;
    result.prompt_tokens = static_cast<int>(request.request.prompt.size());
    result.seed = request.seed;
    result.error = std::move(request.error);
    result.error_code = request.error_code;
    result.prompt_logprobs = std::move(request.prompt_logprobs);
    for (auto& sample : request.samples) {
        result.completion_tokens += static_cast<int>(sample->result.tokens.size());
        result.sequences.push_back(std::move(sample->result));
    }
    if (request.started || request.first_token != Clock::time_point{}) {
        result.timing.queue_ms = ms_between(request.submitted, request.scheduled);
        if (request.first_token != Clock::time_point{}) {
            result.timing.prefill_ms = ms_between(request.scheduled, request.first_token);
            result.timing.decode_ms =
                ms_between(request.first_token, std::max(request.first_token, request.last_token));
        }
    }
    request.handle->complete(std::move(result));
}

void Engine::State::retire_finished() {
    std::vector<std::unique_ptr<ActiveRequest>> done;
    for (auto& request : active)
        if (request->finished()) done.push_back(std::move(request));
    std::erase(active, nullptr);
    retire(done);
}

// Accounts for finished requests (whose blocks are already released), then hands out their
// results: a caller that reads stats() after wait() sees its request gone and its blocks free.
void Engine::State::retire(std::vector<std::unique_ptr<ActiveRequest>>& done) {
    {
        std::lock_guard lock(mutex);
        for (const auto& request : done) {
            if (request->admitted) reserved_blocks -= request->reserved_blocks;
            ++stats.requests_finished;
            stats.prompt_tokens_total += request->request.prompt.size();
            const FinishReason reason = request->samples.front()->result.finish_reason;
            if (reason == FinishReason::kCancelled) ++stats.requests_cancelled;
            if (reason == FinishReason::kTimeout) ++stats.requests_timed_out;
            if (!request->error.empty()) ++stats.requests_failed;
        }
        int running = 0;
        for (const auto& request : active)
            for (const auto& sample : request->samples) running += sample->finished ? 0 : 1;
        stats.running_sequences = running;
        stats.kv_blocks_free = blocks->available_blocks();
    }
    for (auto& request : done) complete(*request);
    done.clear();
}

}  // namespace llmserve::engine
