// Fuzzes the request schemas: the first byte picks the endpoint, the rest is the body. Parsing
// may only fail with llmserve::Error, whose HTTP mapping must be a 4xx (bad input is never a
// 500), and whatever it accepts must pass the engine's validation.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/error.h"
#include "engine/sampling/sampling_params.h"
#include "server/errors.h"
#include "server/schemas.h"

namespace {

using namespace llmserve;

const server::RequestLimits& fuzz_limits() {
    static const server::RequestLimits limits = [] {
        server::RequestLimits l;
        l.model_name = "gpt2";
        l.vocab_size = 50257;
        l.n_positions = 1024;
        return l;
    }();
    return limits;
}

// Accepted options must be valid for a one-token prompt (the server checks the real length).
void check_accepted(const server::GenerationOptions& options) {
    const auto& limits = fuzz_limits();
    engine::validate(
        options.sampling, options.stop,
        engine::ModelLimits{limits.vocab_size, limits.n_positions, 1, limits.max_n, options.n});
}

void parse(std::uint8_t endpoint, std::string_view body) {
    switch (endpoint % 5) {
        case 0:
            check_accepted(server::parse_generate_request(body, fuzz_limits()).options);
            break;
        case 1:
            check_accepted(server::parse_completion_request(body, fuzz_limits()).options);
            break;
        case 2:
            server::parse_tokenize_request(body, fuzz_limits());
            break;
        case 3:
            server::parse_detokenize_request(body, fuzz_limits());
            break;
        default:
            check_accepted(server::parse_chat_request(body, fuzz_limits()).options);
            break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        parse(data[0], body);
    } catch (const Error&) {
        const server::ApiError error = server::api_error_from(std::current_exception());
        if (error.status < 400 || error.status >= 500 || error.message.empty()) std::abort();
        if (error.body().empty()) std::abort();
    }
    return 0;
}
