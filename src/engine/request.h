// What a caller gives the engine and what it gets back.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "engine/sampling/logprobs.h"
#include "engine/sampling/sampling_params.h"
#include "grammar/constraint.h"

namespace llmserve::engine {

// kError: the engine could not continue the sequence (RequestResult::error says why).
enum class FinishReason { kLength, kEos, kStop, kTimeout, kCancelled, kError };
// "length", "eos", "stop", "timeout", "cancelled", "error"
std::string_view to_string(FinishReason reason);

struct GenerationRequest {
    std::vector<TokenId>
        prompt;  // tokenized; an empty prompt is refused (callers prepend BOS if they want one)
    SamplingParams sampling;
    StopParams stop;
    int n = 1;  // samples of this prompt; they share one prefill
    std::optional<std::chrono::steady_clock::time_point>
        deadline;  // past it: finish reason kTimeout
    // When set, every sample's output is a sentence of this grammar (grammar::compile_constraint
    // turns a request's json_schema / grammar / regex / choice into one); a sample whose output
    // is complete with nothing allowed after it finishes as kStop.
    std::shared_ptr<const grammar::Constraint> constraint;
};

struct GeneratedToken {
    TokenId token;
    float logprob = 0.0f;  // log-softmax of the raw model logits (before sampling filters); set
                           // only when SamplingParams::logprobs asks for logprobs, else 0
    std::vector<TokenLogprob> top;  // top-N alternatives when SamplingParams::logprobs is set
};

// One piece of one sample's output, as it becomes final.
struct StreamEvent {
    int index = 0;     // which of the request's n samples
    std::string text;  // newly final text: whole UTF-8 characters, never part of a possible stop
    std::vector<GeneratedToken> tokens;  // tokens generated since the previous event of this sample
};

struct SequenceResult {
    int index = 0;
    std::vector<GeneratedToken> tokens;  // every generated token (up to and including a stop token)
    std::string text;                    // decoded output, ending before a matched stop string
    FinishReason finish_reason = FinishReason::kLength;
    std::string matched_stop;  // the stop string that ended it (finish reason kStop), else empty
    std::optional<TokenId> matched_stop_token;  // the stop token id / EOS that ended it
    // The time between each pair of consecutive tokens of this sample (one entry per gap), for
    // an inter-token latency histogram that sees stalls a per-request mean would hide.
    std::vector<double> inter_token_ms;
};

struct RequestTiming {
    double queue_ms = 0;  // submit -> first scheduled
    double prefill_ms =
        0;  // first scheduled -> first token sampled (time to first token minus queue)
    double decode_ms = 0;  // first token -> last token
};

struct RequestResult {
    std::vector<SequenceResult> sequences;  // ordered by index
    int prompt_tokens = 0;
    int completion_tokens = 0;  // over all samples
    std::uint64_t seed = 0;     // the seed used (drawn when the request gave none)
    std::vector<std::optional<float>>
        prompt_logprobs;  // when SamplingParams::prompt_logprobs (first is nullopt)
    RequestTiming timing;
    // Set when the engine had to end the request (finish reason kError): why, and whether it was
    // the request's doing (kInvalidArgument) or the engine's or model's (kInternal).
    std::string error;
    ErrorCode error_code = ErrorCode::kInternal;
};

// Shared between the engine thread (producer) and the caller (consumer). Thread-safe.
class RequestHandle {
  public:
    explicit RequestHandle(std::uint64_t id) : id_(id) {}

    std::uint64_t id() const { return id_; }
    // Next event, waiting up to `timeout`; nullopt on timeout or when the stream has ended (see
    // finished()).
    std::optional<StreamEvent> next_event(std::chrono::milliseconds timeout);
    // True once the result is available and every event has been taken.
    bool finished() const;
    // Blocks until the result is available (events not taken are dropped from the stream but the
    // result is whole).
    RequestResult wait();
    // Asks the engine to stop this request; takes effect within one step (finish reason
    // kCancelled).
    void cancel();
    bool cancel_requested() const;

    // Engine side.
    void push_event(StreamEvent event);
    void complete(RequestResult result);

  private:
    const std::uint64_t id_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<StreamEvent> events_;
    std::optional<RequestResult> result_;
    bool cancel_requested_ = false;
};

}  // namespace llmserve::engine
