#include "server/generation_path.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "model/model.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

std::string json_text(const Json& value) {
    return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Why the request failed as a whole, if it did: the engine ended a prompt with an error, or a
// prompt reached its deadline before its first token (its client would get nothing at all).
std::exception_ptr request_failure(const std::vector<engine::RequestResult>& results,
                                   double timeout_s) {
    if (const auto error = generation_error(results)) return std::make_exception_ptr(*error);
    for (const engine::RequestResult& result : results) {
        const bool nothing_in_time =
            !result.sequences.empty() &&
            std::all_of(result.sequences.begin(), result.sequences.end(), [](const auto& s) {
                return s.finish_reason == engine::FinishReason::kTimeout && s.tokens.empty();
            });
        if (nothing_in_time) {
            return std::make_exception_ptr(GenerationTimedOut(fmt::format(
                "no token was generated within REQUEST_TIMEOUT_S={} s: the request waited for the "
                "engine (in the queue or processing its prompt) until its deadline; the server is "
                "overloaded, retry later",
                timeout_s)));
        }
    }
    return nullptr;
}

// Everything a streamed response needs after the route has returned.
struct StreamState {
    ServingState* state = nullptr;
    std::shared_ptr<engine::Engine> engine;
    std::shared_ptr<GenerationJob> job;
    std::unique_ptr<ServingState::JobLease> lease;
    ResponseContext response;
    std::shared_ptr<ApiFormatter> formatter;
    std::shared_ptr<RequestContext> request;
    std::function<bool()> client_gone;
};

// Relays the job's events to the formatter and the sink; returns false when the client went away.
void stream_generation(StreamState& s, const StreamSink& sink) {
    const ResponseContext& rc = s.response;
    ApiFormatter& formatter = *s.formatter;
    bool ok = true;
    auto write_events = [&](const std::vector<Json>& events) {
        for (const Json& event : events) {
            if (ok) ok = sink(sse_event(event));
        }
        return ok;
    };
    const std::size_t choices = rc.prompts.size() * static_cast<std::size_t>(rc.n);
    std::vector<std::size_t> streamed(choices, 0);  // generated text bytes sent per choice

    write_events(formatter.stream_start(rc));
    // An error ends the whole response: its event is the last before [DONE], the rest is cancelled.
    bool failed = false;
    GenerationJob::Callbacks callbacks;
    callbacks.client_gone = [&] { return !ok || s.client_gone(); };
    callbacks.on_event = [&](std::size_t p, const engine::StreamEvent& event) {
        if (failed) return true;
        const int index = rc.global_index(p, event.index);
        const std::size_t offset = streamed[index];
        streamed[index] += event.text.size();
        return write_events(formatter.stream_delta(rc, index, p, event.text, event.tokens, offset));
    };
    callbacks.on_result = [&](std::size_t p, const engine::RequestResult& result) {
        if (failed) return true;
        if (const auto failure = request_failure({result}, s.state->config().request_timeout_s)) {
            failed = true;
            s.job->cancel();
            const ApiError api = api_error_from(failure, formatter.error_style());
            return ok = sink("data: " + api.body() + "\n\n");
        }
        for (const engine::SequenceResult& sequence : result.sequences) {
            const int index = rc.global_index(p, sequence.index);
            const std::string tail = sequence.text.size() > streamed[index]
                                         ? sequence.text.substr(streamed[index])
                                         : std::string();
            streamed[index] += tail.size();
            if (!write_events(formatter.stream_finish(rc, index, sequence, tail))) return false;
        }
        return true;
    };
    const auto results = s.job->run(callbacks);
    s.state->record_generation(*s.request, results, s.job->client_disconnected());
    if (s.job->client_disconnected()) return;
    if (!failed) write_events(formatter.stream_end(rc, results));
    if (ok) sink(sse_done());
}

}  // namespace

std::string random_hex(std::size_t bytes) {
    std::random_device device;
    std::string out;
    for (std::size_t i = 0; i < bytes; ++i) out += fmt::format("{:02x}", device() & 0xff);
    return out;
}

ApiResponse run_generation(ServingState& state, const LoadedModel& model, const ApiCall& call,
                           const ApiRequest& request, std::shared_ptr<ApiFormatter> formatter) {
    auto s = std::make_shared<StreamState>();
    s->state = &state;
    s->engine = model.engine;
    s->formatter = std::move(formatter);
    s->request = call.context;
    s->client_gone = call.client_gone;
    const engine::Engine& e = *s->engine;
    const model::ModelConfig& model_config = e.model().config();
    ResponseContext& response = s->response;
    response.model_name = e.model().name();
    response.tokenizer = &e.tokenizer();
    response.prompts = tokenize_prompts(request.prompts, e.tokenizer(), model_config.bos_token_id);
    response.n = request.options.n;
    response.logprobs = request.options.sampling.logprobs;
    response.prompt_logprobs = request.options.sampling.prompt_logprobs;
    response.echo = request.echo;
    response.include_usage = request.include_usage;

    RequestContext& context = *call.context;
    const int max_queue = state.config().max_queue;
    if (request.prompts.size() > static_cast<std::size_t>(max_queue)) {
        // Each prompt takes a queue place: such a request could never be accepted, even idle.
        fail_param("prompt",
                   "the request has {} prompts but at most MAX_QUEUE={} requests wait for the "
                   "engine (one per prompt); send at most {} prompts per request",
                   request.prompts.size(), max_queue, max_queue);
    }
    const auto deadline =
        context.start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(state.config().request_timeout_s));
    auto requests =
        make_engine_requests(response.prompts, request.options, model_config.n_positions, deadline);
    if (!request.stream) {
        // A non-streamed response is held whole (its JSON tree, then its text) until sent.
        const long long limit = state.config().max_response_bytes;
        const std::size_t estimate = worst_case_response_bytes(requests, request.echo);
        if (estimate > static_cast<std::size_t>(limit)) {
            fail_param(request.options.max_new_tokens_field,
                       "the response could take up to {} bytes ({} prompts x n={} x up to {} "
                       "tokens{}), more than MAX_RESPONSE_BYTES={}; ask for fewer prompts, "
                       "samples, tokens or logprobs, or stream the response (\"stream\": true), "
                       "which is not held in memory",
                       estimate, requests.size(), request.options.n,
                       request.options.stop.max_new_tokens,
                       response.logprobs ? fmt::format(" with {} logprobs each", *response.logprobs)
                                         : std::string(),
                       limit);
        }
    }
    for (const TokenizedPrompt& prompt : response.prompts) {
        context.prompt_tokens += static_cast<long long>(prompt.ids.size());
    }
    state.metrics()
        .histogram("llmserve_request_batch_size", "Sequences (prompts x samples) per request.",
                   size_buckets())
        .observe(static_cast<double>(requests.size()) * request.options.n);

    s->job = std::make_shared<GenerationJob>(*s->engine, std::move(requests));
    s->lease = std::make_unique<ServingState::JobLease>(state, s->job);

    ApiResponse answer;
    if (!request.stream) {
        GenerationJob::Callbacks callbacks;
        callbacks.client_gone = call.client_gone;
        const auto results = s->job->run(callbacks);
        state.record_generation(context, results, s->job->client_disconnected());
        if (const auto failure = request_failure(results, state.config().request_timeout_s)) {
            std::rethrow_exception(failure);
        }
        answer.body = json_text(s->formatter->response(response, results));
        return answer;
    }
    answer.content_type = "text/event-stream";
    answer.stream = [s](const StreamSink& sink) {
        try {
            stream_generation(*s, sink);
        } catch (...) {
            // Whatever failed mid-stream reaches the client as a last error event.
            const ApiError api =
                api_error_from(std::current_exception(), s->formatter->error_style());
            s->state->logger().error("stream failed",
                                     {{"request_id", s->request->id}, {"error", api.message}});
            if (sink("data: " + api.body() + "\n\n")) sink(sse_done());
        }
    };
    answer.on_close = [s] {
        s->job->cancel();
        s->lease.reset();
    };
    context.streaming = true;
    return answer;
}

}  // namespace llmserve::server
