#include "server/generation.h"

#include <algorithm>

#include "server/errors.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::server {
namespace {

// How long the relay loop blocks on one request when nothing happened: short enough that a
// disconnect is noticed within about one decode step.
constexpr std::chrono::milliseconds kPollInterval{10};

// Sizes for worst_case_response_bytes: generous averages for every API's shape. Chat's logprobs,
// which repeat each token's UTF-8 bytes as numbers, are the widest: about 70 bytes per
// alternative with GPT-2's vocabulary (completions: about 27).
constexpr std::size_t kChoiceBytes = 512;        // a choice's own fields (index, finish reason)
constexpr std::size_t kTokenTextBytes = 32;      // a token's text, JSON-escaped
constexpr std::size_t kLogprobTokenBytes = 160;  // a token's logprobs entry besides alternatives
constexpr std::size_t kLogprobAlternativeBytes = 96;  // one top_logprobs alternative

}  // namespace

std::vector<TokenizedPrompt> tokenize_prompts(const std::vector<Prompt>& prompts,
                                              const tokenizer::Tokenizer& tokenizer,
                                              std::optional<engine::TokenId> bos_token) {
    std::vector<TokenizedPrompt> out;
    out.reserve(prompts.size());
    for (const Prompt& prompt : prompts) {
        TokenizedPrompt tokenized;
        if (prompt.is_token_ids) {
            tokenized.ids = prompt.token_ids;
            tokenized.text = tokenizer.decode(prompt.token_ids);
        } else {
            tokenized.ids = tokenizer.encode(prompt.text, prompt.add_special_tokens);
            tokenized.text = prompt.text;
        }
        if (tokenized.ids.empty()) {
            if (!bos_token) {
                fail_param("prompt",
                           "the prompt is empty and the model has no BOS token to "
                           "start from");
            }
            tokenized.ids.push_back(*bos_token);
        }
        out.push_back(std::move(tokenized));
    }
    return out;
}

int fit_to_context(int prompt_tokens, const GenerationOptions& options, int n_positions) {
    if (prompt_tokens >= n_positions) {
        throw ContextLengthExceeded(
            fmt::format("the prompt has {} tokens but the model's context is {} tokens; a prompt "
                        "may have at most {} tokens to leave room for generation",
                        prompt_tokens, n_positions, n_positions - 1),
            "prompt");
    }
    const int room = n_positions - prompt_tokens;
    if (!options.max_new_tokens_given) return std::min(options.stop.max_new_tokens, room);
    if (options.stop.max_new_tokens > room) {
        const std::string& field = options.max_new_tokens_field;
        throw ContextLengthExceeded(
            fmt::format("the prompt's {} tokens plus {}={} is {} tokens, more than the model's "
                        "context of {} tokens; {} can be at most {} for this prompt",
                        prompt_tokens, field, options.stop.max_new_tokens,
                        prompt_tokens + options.stop.max_new_tokens, n_positions, field, room),
            field);
    }
    return options.stop.max_new_tokens;
}

std::vector<engine::GenerationRequest> make_engine_requests(
    const std::vector<TokenizedPrompt>& prompts, const GenerationOptions& options, int n_positions,
    std::chrono::steady_clock::time_point deadline) {
    std::vector<engine::GenerationRequest> requests;
    requests.reserve(prompts.size());
    for (const TokenizedPrompt& prompt : prompts) {
        engine::GenerationRequest request;
        request.prompt = prompt.ids;
        request.sampling = options.sampling;
        request.stop = options.stop;
        request.stop.max_new_tokens =
            fit_to_context(static_cast<int>(prompt.ids.size()), options, n_positions);
        request.stop.min_new_tokens =
            std::min(request.stop.min_new_tokens, request.stop.max_new_tokens);
        request.n = options.n;
        request.constraint = options.constraint;
        request.deadline = deadline;
        requests.push_back(std::move(request));
    }
    return requests;
}

std::size_t worst_case_response_bytes(const std::vector<engine::GenerationRequest>& requests,
                                      bool echo) {
    std::size_t total = 0;
    for (const engine::GenerationRequest& request : requests) {
        const engine::SamplingParams& sampling = request.sampling;
        const bool scored = sampling.logprobs.has_value();
        const std::size_t generated_token_bytes =
            kTokenTextBytes +
            (scored ? kLogprobTokenBytes +
                          kLogprobAlternativeBytes * static_cast<std::size_t>(*sampling.logprobs)
                    : 0);
        // Prompt tokens are scored without alternatives.
        const std::size_t prompt_token_bytes =
            (echo ? kTokenTextBytes : 0) +
            (sampling.prompt_logprobs || (echo && scored) ? kLogprobTokenBytes : 0);
        const std::size_t sample_bytes =
            kChoiceBytes +
            static_cast<std::size_t>(request.stop.max_new_tokens) * generated_token_bytes +
            request.prompt.size() * prompt_token_bytes;
        total += static_cast<std::size_t>(request.n) * sample_bytes;
    }
    return total;
}

GenerationJob::GenerationJob(engine::Engine& engine,
                             std::vector<engine::GenerationRequest> requests) {
    try {
        for (auto& request : requests) handles_.push_back(engine.submit(std::move(request)));
    } catch (...) {
        cancel();
        throw;
    }
}

GenerationJob::~GenerationJob() {
    cancel();
}

void GenerationJob::cancel() {
    for (const auto& handle : handles_) {
        if (!handle->finished()) handle->cancel();
    }
}

std::vector<engine::RequestResult> GenerationJob::run(const Callbacks& callbacks) {
    std::vector<std::optional<engine::RequestResult>> results(handles_.size());
    std::size_t remaining = handles_.size();
    bool writable = true;
    auto deliver = [&](std::size_t prompt, const engine::StreamEvent& event) {
        if (writable && callbacks.on_event && !callbacks.on_event(prompt, event)) {
            writable = false;
        }
    };
    while (remaining > 0) {
        bool progressed = false;
        for (std::size_t i = 0; i < handles_.size(); ++i) {
            if (results[i]) continue;
            while (auto event = handles_[i]->next_event(std::chrono::milliseconds(0))) {
                deliver(i, *event);
                progressed = true;
            }
            if (handles_[i]->finished()) {
                results[i] = handles_[i]->wait();
                --remaining;
                progressed = true;
                if (writable && callbacks.on_result && !callbacks.on_result(i, *results[i])) {
                    writable = false;
                }
            }
        }
        if (!client_disconnected_ &&
            (!writable || (callbacks.client_gone && callbacks.client_gone()))) {
            client_disconnected_ = true;
            writable = false;
            cancel();
        }
        if (remaining > 0 && !progressed) {
            // Block briefly on the first unfinished request; its event (if any) is delivered now.
            const auto next = std::find_if(results.begin(), results.end(),
                                           [](const auto& result) { return !result; });
            const auto i = static_cast<std::size_t>(next - results.begin());
            if (auto event = handles_[i]->next_event(kPollInterval)) deliver(i, *event);
        }
    }
    std::vector<engine::RequestResult> out;
    out.reserve(results.size());
    for (auto& result : results) out.push_back(std::move(*result));
    return out;
}

}  // namespace llmserve::server
