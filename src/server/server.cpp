#include "server/server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "common/error.h"
#include "engine/engine.h"
#include "model/model.h"
#include "server/auth.h"
#include "server/connection_probe.h"
#include "server/errors.h"
#include "server/generation.h"
#include "server/http_transport.h"
#include "server/rate_limiter.h"
#include "server/responses.h"
#include "server/schemas.h"
#include "server/system_memory.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::server {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr const char* kJsonType = "application/json";
constexpr int kMaxSamplesPerPrompt = 16;  // the engine's default bound on n
constexpr int kMaxPromptsPerRequest = 32;
constexpr int kMaxSequencesPerRequest = 64;
// HTTP worker threads beyond those that can wait on generations: probes, metrics, tokenize.
constexpr int kSpareHttpThreads = 32;
// Pending connections the kernel holds for accept().
constexpr int kListenBacklog = 4096;
// After the shutdown grace, how long responses may still take to be written.
constexpr auto kShutdownWriteTime = std::chrono::seconds(2);

// The Content-Type of a playground file, by its extension.
std::string static_content_type(const std::filesystem::path& file) {
    const std::string extension = file.extension().string();
    if (extension == ".html") return "text/html; charset=utf-8";
    if (extension == ".js") return "text/javascript; charset=utf-8";
    if (extension == ".css") return "text/css; charset=utf-8";
    if (extension == ".png") return "image/png";
    if (extension == ".svg") return "image/svg+xml";
    if (extension == ".json") return "application/json";
    return "application/octet-stream";
}

std::string json_text(const Json& value) {
    return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string random_hex(std::size_t bytes) {
    std::random_device device;
    std::string out;
    for (std::size_t i = 0; i < bytes; ++i) out += fmt::format("{:02x}", device() & 0xff);
    return out;
}

// A client-chosen X-Request-Id is kept when it is short and cannot break a log line.
bool acceptable_request_id(std::string_view id) {
    return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
               c == ':';
    });
}

std::string truncated(std::string_view text, std::size_t limit = 200) {
    return text.size() <= limit ? std::string(text) : std::string(text.substr(0, limit)) + "...";
}

// What one request carries through the pipeline and reports in its log line.
struct RequestContext {
    std::string id;
    std::string method;
    std::string route;  // the route's path, or "unmatched"
    std::string path;
    std::string client;
    std::optional<std::size_t> key_index;
    Clock::time_point start = Clock::now();
    long long prompt_tokens = 0;
    long long completion_tokens = 0;
    std::vector<std::string> finish_reasons;
    std::string engine_error;  // why the engine ended a sequence with an error, if it did
    bool probe = false;        // /health, /ready, /metrics
    bool streaming = false;    // the end of the stream finishes the request
    bool client_gone = false;
};

// The error that ended a generation, if the engine ended one: the request fails as a whole
// (500 for the engine's or the model's fault, 422 when the request's own controls caused it).
std::optional<Error> generation_error(const std::vector<engine::RequestResult>& results) {
    for (const engine::RequestResult& result : results) {
        if (!result.error.empty()) {
            return Error(result.error_code, fmt::format("generation failed: {}", result.error));
        }
    }
    return std::nullopt;
}

// A refusal decided by the server itself (auth, rate limit, not ready), with its metric reason.
struct Rejection {
    ApiError error;
    std::string reason;
};

// The rejection reason /metrics counts for an error response, if it is one.
std::optional<std::string> rejection_reason(const ApiError& error) {
    switch (error.status) {
        case 400:
        case 404:
        case 405:
        case 422:
        case 431:
        case 501:
        case 505:
            return "validation";
        case 408:
            return "read_timeout";
        case 401:
            return "auth";
        case 413:
            return "payload_too_large";
        case 429:
            return "rate_limit";
        case 503:
            return error.code == "queue_full" ? "queue_full" : error.code;
        default:
            return std::nullopt;
    }
}

enum class Api { kGenerate, kCompletions };

// A parsed generation request of either API.
struct GenerationCall {
    Api api = Api::kGenerate;
    std::vector<Prompt> prompts;
    GenerationOptions options;
    bool stream = false;
    bool echo = false;
    bool include_usage = false;
};

}  // namespace

struct HttpServer::Impl {
    using Handler = std::function<void(const httplib::Request&, httplib::Response&,
                                       const std::shared_ptr<RequestContext>&)>;
    struct Route {
        std::string method;
        std::string path;
        bool probe;  // /health, /ready, /metrics: never rate limited, optionally open
        Handler handler;
    };

    // Keeps a running job in the registry that shutdown() waits on.
    class JobLease {
      public:
        JobLease(Impl& impl, std::shared_ptr<GenerationJob> job) : impl_(impl), job_(job) {
            std::lock_guard lock(impl_.jobs_mutex);
            impl_.jobs.insert(std::move(job));
        }
        ~JobLease() {
            {
                std::lock_guard lock(impl_.jobs_mutex);
                impl_.jobs.erase(job_);
            }
            impl_.jobs_changed.notify_all();
        }
        JobLease(const JobLease&) = delete;
        JobLease& operator=(const JobLease&) = delete;

      private:
        Impl& impl_;
        std::shared_ptr<GenerationJob> job_;
    };

    // Everything a streamed response needs after the handler has returned.
    struct StreamState {
        GenerationCall call;
        std::shared_ptr<engine::Engine> engine;
        std::shared_ptr<GenerationJob> job;
        std::unique_ptr<JobLease> lease;
        ResponseContext response;
        CompletionIdentity identity;
        std::shared_ptr<RequestContext> request;
        ConnectionProbe probe;
    };

    Impl(const ServerConfig& server_config, Logger& server_logger);

    void register_routes();
    void mount_playground();
    void add_route(std::string method, std::string path, bool probe, Handler handler);
    void handle(const httplib::Request& req, httplib::Response& res);
    void dispatch(const Route& route, const httplib::Request& req, httplib::Response& res);
    bool serve_static(const httplib::Request& req, httplib::Response& res) const;
    void answer_unmatched(const httplib::Request& req, httplib::Response& res);
    void answer_protocol_error(const httplib::Request& req, httplib::Response& res, int status,
                               const std::string& message);
    std::shared_ptr<RequestContext> make_context(const httplib::Request& req,
                                                 std::string route) const;
    void check_access(const Route& route, const httplib::Request& req, RequestContext& context);
    void send_error(httplib::Response& res, const ApiError& error);
    void finish_request(const RequestContext& context, int status);
    void count_rejection(const std::string& reason);

    std::shared_ptr<engine::Engine> require_engine() const;
    RequestLimits request_limits(const engine::Engine& engine) const;
    // The request defaults: explicit settings > the model's generation_config.json > built-in.
    engine::GenerationSettings generation_settings(const engine::Engine& engine) const;

    void handle_generate(const httplib::Request& req, httplib::Response& res,
                         const std::shared_ptr<RequestContext>& context);
    void handle_completions(const httplib::Request& req, httplib::Response& res,
                            const std::shared_ptr<RequestContext>& context);
    void run_generation(const httplib::Request& req, httplib::Response& res,
                        const std::shared_ptr<RequestContext>& context, GenerationCall call);
    void stream_generation(StreamState& state, httplib::DataSink& sink);
    void record_generation(RequestContext& context,
                           const std::vector<engine::RequestResult>& results, bool client_gone);
    Json info_json() const;
    void refresh_gauges();

    const ServerConfig config;
    Logger& logger;
    MetricsRegistry metrics;
    const ApiKeyAuthenticator auth;
    std::optional<RateLimiter> rate_limiter;
    std::unique_ptr<HttpTransport> transport;
    std::filesystem::path web_dir;  // the playground's files; empty when not served
    std::vector<Route> routes;
    const long long started_unix;

    mutable std::mutex engine_mutex;
    std::shared_ptr<engine::Engine> engine;  // null until the model is loaded
    double model_load_seconds = 0;

    std::atomic<bool> shutting_down{false};
    std::mutex jobs_mutex;
    std::condition_variable jobs_changed;
    std::set<std::shared_ptr<GenerationJob>> jobs;
};

HttpServer::Impl::Impl(const ServerConfig& server_config, Logger& server_logger)
    : config(server_config),
      logger(server_logger),
      auth(server_config.api_keys),
      started_unix(std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count()) {
    if (config.rate_limit_rpm > 0) {
        rate_limiter.emplace(config.rate_limit_rpm, config.effective_rate_limit_burst());
    }
    TransportOptions options;
    options.host = config.host;
    options.port = config.port;
    options.backlog = kListenBacklog;
    options.worker_threads = config.max_concurrent_requests + config.max_queue + kSpareHttpThreads;
    options.request_read_timeout = std::chrono::milliseconds(
        static_cast<long long>(std::ceil(config.request_read_timeout_s * 1000)));
    options.max_connections_per_client = config.max_connections_per_client;
    options.max_body_bytes = config.max_body_bytes;
    transport = std::make_unique<HttpTransport>(
        options, [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); },
        [this](const httplib::Request& req, httplib::Response& res, int status,
               const std::string& message) { answer_protocol_error(req, res, status, message); },
        metrics);
    register_routes();
    mount_playground();
}

void HttpServer::Impl::mount_playground() {
    // The playground page is static files, served before the API routes and without auth: the page
    // itself asks for a key when the API answers 401. WEB_DIR overrides the folder baked in at
    // build.
    const char* override_dir = std::getenv("WEB_DIR");
    const std::string dir = override_dir && *override_dir ? override_dir : LLMSERVE_WEB_DIR;
    std::error_code error;
    web_dir = std::filesystem::canonical(dir, error);
    if (error || !std::filesystem::is_directory(web_dir, error)) {
        web_dir.clear();
        logger.warn("playground not served: its folder is missing", {{"web_dir", dir}});
    }
}

// A GET or HEAD of a regular file below the playground folder (never outside it, also not
// through a symlink); "/" and folders mean their index.html.
bool HttpServer::Impl::serve_static(const httplib::Request& req, httplib::Response& res) const {
    if (web_dir.empty() || (req.method != "GET" && req.method != "HEAD")) return false;
    std::filesystem::path relative = std::filesystem::path(req.path).relative_path();
    if (req.path.empty() || req.path.back() == '/') relative /= "index.html";
    for (const auto& part : relative) {
        if (part == "..") return false;
    }
    std::error_code error;
    const std::filesystem::path file = std::filesystem::canonical(web_dir / relative, error);
    if (error || !std::filesystem::is_regular_file(file, error)) return false;
    const auto [end, inside] =
        std::mismatch(web_dir.begin(), web_dir.end(), file.begin(), file.end());
    if (end != web_dir.end()) return false;
    std::ifstream in(file, std::ios::binary);
    const std::string contents((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    if (!in && !in.eof()) return false;
    res.set_content(contents, static_content_type(file));
    return true;
}

std::shared_ptr<RequestContext> HttpServer::Impl::make_context(const httplib::Request& req,
                                                               std::string route) const {
    auto context = std::make_shared<RequestContext>();
    const std::string given = req.get_header_value("X-Request-Id");
    context->id = acceptable_request_id(given) ? given : random_hex(8);
    context->method = req.method;
    context->route = std::move(route);
    context->path = truncated(req.path);
    context->client = req.remote_addr;
    return context;
}

void HttpServer::Impl::add_route(std::string method, std::string path, bool probe,
                                 Handler handler) {
    routes.push_back(Route{std::move(method), std::move(path), probe, std::move(handler)});
}

void HttpServer::Impl::handle(const httplib::Request& req, httplib::Response& res) {
    // HEAD is GET without the body (the transport leaves it out).
    const std::string_view method = req.method == "HEAD" ? "GET" : req.method;
    for (const Route& route : routes) {
        if (route.path == req.path && route.method == method) {
            dispatch(route, req, res);
            return;
        }
    }
    if (serve_static(req, res)) return;
    answer_unmatched(req, res);
}

void HttpServer::Impl::dispatch(const Route& route, const httplib::Request& req,
                                httplib::Response& res) {
    const auto context = make_context(req, route.path);
    context->probe = route.probe;
    res.set_header("X-Request-Id", context->id);
    try {
        check_access(route, req, *context);
        route.handler(req, res, context);
    } catch (const Rejection& rejection) {
        count_rejection(rejection.reason);
        send_error(res, rejection.error);
    } catch (...) {
        const ApiError error = api_error_from(std::current_exception());
        if (const auto reason = rejection_reason(error)) count_rejection(*reason);
        send_error(res, error);
    }
    if (!context->streaming) finish_request(*context, res.status == -1 ? 200 : res.status);
}

void HttpServer::Impl::check_access(const Route& route, const httplib::Request& req,
                                    RequestContext& context) {
    if (auth.enabled() && !(route.probe && config.auth_exempt_probes)) {
        const std::string header = req.get_header_value("Authorization");
        context.key_index = auth.authenticate(header);
        if (!context.key_index) throw Rejection{unauthorized(!header.empty()), "auth"};
    }
    if (rate_limiter && !route.probe) {
        const std::string key = context.key_index ? fmt::format("key:{}", *context.key_index)
                                                  : "address:" + req.remote_addr;
        const RateLimiter::Decision decision = rate_limiter->acquire(key);
        if (!decision.allowed) throw Rejection{rate_limited(decision.retry_after_s), "rate_limit"};
    }
}

void HttpServer::Impl::send_error(httplib::Response& res, const ApiError& error) {
    res.status = error.status;
    if (error.retry_after_s) res.set_header("Retry-After", std::to_string(*error.retry_after_s));
    if (error.status == 401) res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(error.body(), kJsonType);
}

void HttpServer::Impl::answer_unmatched(const httplib::Request& req, httplib::Response& res) {
    const auto context = make_context(req, "unmatched");
    std::string allowed;
    for (const Route& route : routes) {
        if (route.path == req.path) allowed += (allowed.empty() ? "" : ", ") + route.method;
    }
    ApiError error;
    if (allowed.empty()) {
        error = route_not_found(req.method, context->path);
    } else {
        error = method_not_allowed(req.method, req.path, allowed);
        res.set_header("Allow", allowed);
        context->route = req.path;
    }
    if (const auto reason = rejection_reason(error)) count_rejection(*reason);
    res.set_header("X-Request-Id", context->id);
    send_error(res, error);
    finish_request(*context, res.status);
}

// A request the HTTP layer refused (malformed, too large, too slow); the connection is closed
// after the answer.
void HttpServer::Impl::answer_protocol_error(const httplib::Request& req, httplib::Response& res,
                                             int status, const std::string& message) {
    const auto context = make_context(req, "unmatched");
    if (context->method.empty()) context->method = "-";
    const ApiError error = protocol_error(status, message);
    if (const auto reason = rejection_reason(error)) count_rejection(*reason);
    res.set_header("X-Request-Id", context->id);
    res.set_header("Connection", "close");
    send_error(res, error);
    finish_request(*context, res.status);
}

void HttpServer::Impl::count_rejection(const std::string& reason) {
    metrics
        .counter("llmserve_rejected_requests_total",
                 "Requests refused before generation, by reason.", {{"reason", reason}})
        .inc();
}

void HttpServer::Impl::finish_request(const RequestContext& context, int status) {
    const double seconds = std::chrono::duration<double>(Clock::now() - context.start).count();
    metrics
        .counter("llmserve_http_requests_total", "HTTP requests by route, method and status.",
                 {{"route", context.route},
                  {"method", context.method},
                  {"status", std::to_string(status)}})
        .inc();
    metrics
        .histogram("llmserve_http_request_duration_seconds",
                   "Time from request arrival to the end of the response, by route.",
                   latency_buckets_seconds(), {{"route", context.route}})
        .observe(seconds);
    LogFields fields = {{"request_id", context.id},
                        {"method", context.method},
                        {"path", context.path},
                        {"status", status},
                        {"latency_ms", std::round(seconds * 1e4) / 10},
                        {"client", context.client}};
    if (context.key_index) fields.emplace_back("api_key", *context.key_index);
    if (context.prompt_tokens > 0 || context.completion_tokens > 0) {
        fields.emplace_back("prompt_tokens", context.prompt_tokens);
        fields.emplace_back("completion_tokens", context.completion_tokens);
    }
    if (!context.finish_reasons.empty()) {
        fields.emplace_back("finish_reason",
                            fmt::format("{}", fmt::join(context.finish_reasons, ",")));
    }
    if (context.client_gone) fields.emplace_back("client_gone", true);
    if (!context.engine_error.empty()) fields.emplace_back("error", context.engine_error);
    // Probes arrive every few seconds from load balancers: their lines are debug-level.
    const LogLevel level = !context.engine_error.empty() ? LogLevel::kError
                           : status >= 500               ? LogLevel::kWarn
                           : context.probe               ? LogLevel::kDebug
                                                         : LogLevel::kInfo;
    logger.log(level, "request", fields);
}

std::shared_ptr<engine::Engine> HttpServer::Impl::require_engine() const {
    if (shutting_down) throw Rejection{not_ready("the server is shutting down", 5), "not_ready"};
    std::lock_guard lock(engine_mutex);
    if (!engine) throw Rejection{not_ready("the model is still loading", 2), "not_ready"};
    return engine;
}

RequestLimits HttpServer::Impl::request_limits(const engine::Engine& e) const {
    const model::ModelConfig& model_config = e.model().config();
    RequestLimits limits;
    limits.model_name = e.model().name();
    limits.vocab_size = model_config.vocab_size;
    limits.n_positions = model_config.n_positions;
    limits.max_n = kMaxSamplesPerPrompt;
    limits.max_prompts = kMaxPromptsPerRequest;
    limits.max_sequences = kMaxSequencesPerRequest;
    const engine::GenerationSettings settings = generation_settings(e);
    limits.default_max_new_tokens = settings.max_new_tokens;
    limits.default_temperature = static_cast<float>(settings.temperature);
    limits.default_top_p = static_cast<float>(settings.top_p);
    limits.default_top_k = settings.top_k;
    limits.default_repetition_penalty = settings.repetition_penalty;
    return limits;
}

engine::GenerationSettings HttpServer::Impl::generation_settings(const engine::Engine& e) const {
    auto is_explicit = [&](std::string_view name) {
        const auto it = config.sources.find(name);
        return it != config.sources.end() && it->second != ConfigSource::kDefault;
    };
    engine::ExplicitSettings explicit_settings;
    if (is_explicit("MAX_LENGTH")) explicit_settings.max_new_tokens = config.max_length;
    if (is_explicit("TEMPERATURE")) explicit_settings.temperature = config.temperature;
    if (is_explicit("TOP_P")) explicit_settings.top_p = config.top_p;
    return engine::resolve_generation_settings(explicit_settings, e.model().generation_defaults());
}

void HttpServer::Impl::handle_generate(const httplib::Request& req, httplib::Response& res,
                                       const std::shared_ptr<RequestContext>& context) {
    const auto e = require_engine();
    GenerateRequest request = parse_generate_request(req.body, request_limits(*e));
    GenerationCall call;
    call.api = Api::kGenerate;
    for (std::string& text : request.prompts)
        call.prompts.push_back(Prompt{std::move(text), {}, false});
    call.options = std::move(request.options);
    call.stream = request.stream;
    run_generation(req, res, context, std::move(call));
}

void HttpServer::Impl::handle_completions(const httplib::Request& req, httplib::Response& res,
                                          const std::shared_ptr<RequestContext>& context) {
    const auto e = require_engine();
    CompletionRequest request = parse_completion_request(req.body, request_limits(*e));
    GenerationCall call;
    call.api = Api::kCompletions;
    call.prompts = std::move(request.prompts);
    call.options = std::move(request.options);
    call.stream = request.stream;
    call.echo = request.echo;
    call.include_usage = request.include_usage;
    run_generation(req, res, context, std::move(call));
}

void HttpServer::Impl::run_generation(const httplib::Request& req, httplib::Response& res,
                                      const std::shared_ptr<RequestContext>& context,
                                      GenerationCall call) {
    auto state = std::make_shared<StreamState>();
    state->engine = require_engine();
    const engine::Engine& e = *state->engine;
    const model::ModelConfig& model_config = e.model().config();
    ResponseContext& response = state->response;
    response.model_name = e.model().name();
    response.tokenizer = &e.tokenizer();
    response.prompts = tokenize_prompts(call.prompts, e.tokenizer(), model_config.bos_token_id);
    response.n = call.options.n;
    response.logprobs = call.options.sampling.logprobs;
    response.prompt_logprobs = call.options.sampling.prompt_logprobs;
    response.echo = call.echo;

    const auto deadline =
        context->start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(config.request_timeout_s));
    auto requests =
        make_engine_requests(response.prompts, call.options, model_config.n_positions, deadline);
    for (const TokenizedPrompt& prompt : response.prompts) {
        context->prompt_tokens += static_cast<long long>(prompt.ids.size());
    }
    metrics
        .histogram("llmserve_request_batch_size", "Sequences (prompts x samples) per request.",
                   size_buckets())
        .observe(static_cast<double>(requests.size()) * call.options.n);

    state->job = std::make_shared<GenerationJob>(*state->engine, std::move(requests));
    state->lease = std::make_unique<JobLease>(*this, state->job);
    state->probe = ConnectionProbe::find(req.local_port, req.remote_addr, req.remote_port);
    state->request = context;
    state->identity = CompletionIdentity{"cmpl-" + random_hex(12),
                                         std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count()};
    state->call = std::move(call);

    if (!state->call.stream) {
        GenerationJob::Callbacks callbacks;
        callbacks.client_gone = [&] { return state->probe.client_gone(); };
        const auto results = state->job->run(callbacks);
        record_generation(*context, results, state->job->client_disconnected());
        if (const auto error = generation_error(results)) throw *error;
        const Json body = state->call.api == Api::kGenerate
                              ? generate_response(response, results)
                              : completion_response(response, state->identity, results);
        res.set_content(json_text(body), kJsonType);
        return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // tells proxies such as nginx not to buffer
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, state](std::size_t, httplib::DataSink& sink) {
            // An exception must not escape into the HTTP library's worker thread.
            try {
                stream_generation(*state, sink);
            } catch (const std::exception& e) {
                logger.error("stream failed",
                             {{"request_id", state->request->id}, {"error", e.what()}});
                return false;  // drops the connection: the client sees a truncated stream
            }
            sink.done();
            return true;
        },
        [this, state](bool) noexcept {
            // Runs when the response is destroyed: after the stream, or instead of it when the
            // client went away before the first byte.
            state->job->cancel();
            state->lease.reset();
            try {
                finish_request(*state->request, 200);
            } catch (const std::exception& e) {
                logger.error("request accounting failed", {{"error", e.what()}});
            }
        });
    context->streaming = true;
}

void HttpServer::Impl::stream_generation(StreamState& state, httplib::DataSink& sink) {
    const ResponseContext& rc = state.response;
    const GenerationCall& call = state.call;
    const bool openai = call.api == Api::kCompletions;
    auto write = [&](const std::string& text) { return sink.write(text.data(), text.size()); };
    const std::size_t choices = rc.prompts.size() * static_cast<std::size_t>(rc.n);
    std::vector<std::size_t> streamed(choices, 0);  // text bytes sent per choice, echo excluded

    bool ok = true;
    if (openai && call.echo) {
        for (std::size_t p = 0; p < rc.prompts.size() && ok; ++p) {
            for (int s = 0; s < rc.n && ok; ++s) {
                ok = write(sse_event(completion_chunk(rc, state.identity, rc.global_index(p, s),
                                                      rc.prompts[p].text, nullptr, std::nullopt,
                                                      call.include_usage)));
            }
        }
    }
    // An error ends the whole response: its event is the last before [DONE], the rest is cancelled.
    bool failed = false;
    GenerationJob::Callbacks callbacks;
    callbacks.client_gone = [&] { return !ok || state.probe.client_gone(); };
    callbacks.on_event = [&](std::size_t p, const engine::StreamEvent& event) {
        if (failed) return true;
        const int index = rc.global_index(p, event.index);
        const std::size_t offset = streamed[index] + (call.echo ? rc.prompts[p].text.size() : 0);
        streamed[index] += event.text.size();
        if (!openai) {
            return event.text.empty() || write(sse_event(generate_stream_piece(index, event.text)));
        }
        const bool with_logprobs = rc.logprobs.has_value() && !event.tokens.empty();
        if (event.text.empty() && !with_logprobs) return true;
        Json logprobs =
            with_logprobs ? openai_logprobs(*rc.tokenizer, event.tokens, offset) : Json(nullptr);
        return write(
            sse_event(completion_chunk(rc, state.identity, index, event.text, std::move(logprobs),
                                       std::nullopt, call.include_usage)));
    };
    callbacks.on_result = [&](std::size_t p, const engine::RequestResult& result) {
        if (failed) return true;
        if (const auto error = generation_error({result})) {
            failed = true;
            state.job->cancel();
            const ApiError api = api_error_from(std::make_exception_ptr(*error));
            return write("data: " + api.body() + "\n\n");
        }
        for (const engine::SequenceResult& sequence : result.sequences) {
            const int index = rc.global_index(p, sequence.index);
            // Whatever of the final text no event carried (normally nothing).
            const std::string tail = sequence.text.size() > streamed[index]
                                         ? sequence.text.substr(streamed[index])
                                         : std::string();
            streamed[index] += tail.size();
            const bool written =
                openai ? write(sse_event(completion_chunk(
                             rc, state.identity, index, tail, nullptr,
                             openai_finish_reason(sequence.finish_reason), call.include_usage)))
                       : (tail.empty() || write(sse_event(generate_stream_piece(index, tail))));
            if (!written) return false;
        }
        return true;
    };
    const auto results = state.job->run(callbacks);
    record_generation(*state.request, results, state.job->client_disconnected());
    if (state.job->client_disconnected()) return;
    if (failed) {
        write(sse_done());
        return;
    }
    if (!openai) {
        write(sse_event(generate_stream_done(rc, results)));
    } else if (call.include_usage) {
        write(sse_event(completion_usage_chunk(rc, state.identity, results)));
    }
    write(sse_done());
}

void HttpServer::Impl::record_generation(RequestContext& context,
                                         const std::vector<engine::RequestResult>& results,
                                         bool client_gone) {
    const auto seconds = [](double ms) { return ms / 1000.0; };
    for (const engine::RequestResult& result : results) {
        context.completion_tokens += result.completion_tokens;
        metrics.counter("llmserve_prompt_tokens_total", "Prompt tokens processed.")
            .inc(result.prompt_tokens);
        metrics.counter("llmserve_generation_tokens_total", "Tokens generated.")
            .inc(result.completion_tokens);
        metrics
            .histogram("llmserve_request_queue_seconds",
                       "Time a request waited before the engine scheduled it.",
                       latency_buckets_seconds())
            .observe(seconds(result.timing.queue_ms));
        std::size_t longest = 0;
        for (const engine::SequenceResult& sequence : result.sequences) {
            longest = std::max(longest, sequence.tokens.size());
            const std::string reason(engine::to_string(sequence.finish_reason));
            if (std::find(context.finish_reasons.begin(), context.finish_reasons.end(), reason) ==
                context.finish_reasons.end()) {
                context.finish_reasons.push_back(reason);
            }
            metrics
                .counter("llmserve_sequences_finished_total",
                         "Generated sequences by finish reason.", {{"reason", reason}})
                .inc();
        }
        if (longest > 0) {
            metrics
                .histogram("llmserve_time_to_first_token_seconds",
                           "Time from submission to the first generated token.",
                           latency_buckets_seconds())
                .observe(seconds(result.timing.queue_ms + result.timing.prefill_ms));
        }
        if (longest > 1) {
            metrics
                .histogram("llmserve_inter_token_latency_seconds",
                           "Mean time between consecutive tokens of a request.",
                           latency_buckets_seconds())
                .observe(seconds(result.timing.decode_ms) / static_cast<double>(longest - 1));
        }
    }
    if (const auto error = generation_error(results)) context.engine_error = error->what();
    if (client_gone) {
        context.client_gone = true;
        metrics
            .counter("llmserve_client_disconnects_total",
                     "Generations cancelled because the client went away.")
            .inc();
    }
}

namespace {

// The architecture spec the forward pass runs (what config.json's family reader derived).
Json spec_json(const model::ModelConfig& c) {
    Json spec = {{"norm", model::to_string(c.norm)},
                 {"norm_eps", c.layer_norm_epsilon},
                 {"n_kv_head", c.n_kv_head},
                 {"head_dim", c.head_dim},
                 {"n_inner", c.n_inner},
                 {"mlp", c.gated_mlp ? "gated" : "plain"},
                 {"activation", model::to_string(c.activation)},
                 {"qkv_bias", c.qkv_bias},
                 {"o_bias", c.o_bias},
                 {"mlp_bias", c.mlp_bias},
                 {"qk_norm", c.qk_norm},
                 {"tie_word_embeddings", c.tie_word_embeddings},
                 {"sliding_windows", c.layer_windows}};
    if (c.rope) {
        spec["positions"] = "rope";
        spec["rope"] = {{"type", model::to_string(c.rope->type)},
                        {"theta", c.rope->theta},
                        {"rotary_dim", c.rope->rotary_dim},
                        {"factor", c.rope->factor}};
    } else {
        spec["positions"] = "learned";
    }
    return spec;
}

}  // namespace

Json HttpServer::Impl::info_json() const {
    const auto e = require_engine();
    const model::Model& model = e->model();
    const model::ModelConfig& c = model.config();
    const engine::GenerationSettings settings = generation_settings(*e);
    Json model_json = {{"name", model.name()},
                       {"path", model.directory().string()},
                       {"architecture", c.family()},
                       {"spec", spec_json(c)},
                       {"n_positions", c.n_positions},
                       {"vocab_size", c.vocab_size},
                       {"n_embd", c.n_embd},
                       {"n_layer", c.n_layer},
                       {"n_head", c.n_head},
                       {"parameters", model.parameter_count()},
                       {"dtype", model.dtype()},
                       {"stored_dtype", model.stored_dtype()},
                       {"weight_bytes", model.weight_bytes()},
                       {"eos_token_ids", c.eos_token_ids},
                       {"bos_token_id", c.bos_token_id ? Json(*c.bos_token_id) : Json(nullptr)},
                       {"load_seconds", model_load_seconds}};
    return {{"version", LLMSERVE_VERSION},
            {"model", std::move(model_json)},
            {"device", model.device_name()},
            {"threads", model.backend().threads()},
            {"defaults",
             {{"max_length", settings.max_new_tokens},
              {"temperature", settings.temperature},
              {"top_p", settings.top_p},
              {"top_k", settings.top_k},
              {"repetition_penalty", settings.repetition_penalty}}},
            {"limits",
             {{"max_body_bytes", config.max_body_bytes},
              {"max_concurrent_requests", config.max_concurrent_requests},
              {"max_queue", config.max_queue},
              {"request_timeout_s", config.request_timeout_s},
              {"max_samples_per_prompt", kMaxSamplesPerPrompt},
              {"max_prompts_per_request", kMaxPromptsPerRequest},
              {"max_sequences_per_request", kMaxSequencesPerRequest},
              {"max_stop_strings", engine::kMaxStopStrings},
              {"max_logprobs", engine::kMaxLogprobs}}},
            {"auth", {{"enabled", auth.enabled()}, {"probes_open", config.auth_exempt_probes}}},
            {"rate_limit",
             {{"requests_per_minute", config.rate_limit_rpm},
              {"burst", config.rate_limit_rpm > 0 ? config.effective_rate_limit_burst() : 0}}}};
}

void HttpServer::Impl::refresh_gauges() {
    if (const auto rss = resident_memory_bytes()) {
        metrics.gauge("llmserve_process_resident_memory_bytes", "Resident memory of the server.")
            .set(static_cast<double>(*rss));
    }
    if (const auto available = available_memory_bytes()) {
        metrics
            .gauge("llmserve_system_memory_available_bytes",
                   "Memory available to the server (MemAvailable, within any cgroup limit).")
            .set(static_cast<double>(*available));
    }
    std::shared_ptr<engine::Engine> e;
    {
        std::lock_guard lock(engine_mutex);
        e = engine;
    }
    {
        std::lock_guard lock(jobs_mutex);
        metrics
            .gauge("llmserve_http_requests_in_flight",
                   "Generation requests being served (waiting or running).")
            .set(static_cast<double>(jobs.size()));
    }
    metrics.gauge("llmserve_model_loaded", "1 once the model is loaded.").set(e ? 1 : 0);
    if (!e) return;
    const engine::EngineStats stats = e->stats();
    metrics.gauge("llmserve_requests_running", "Sequences the engine is decoding.")
        .set(stats.running_sequences);
    metrics.gauge("llmserve_requests_waiting", "Requests queued for the engine.")
        .set(stats.waiting_requests);
    metrics.gauge("llmserve_batch_size", "Sequences in the engine's latest step.")
        .set(stats.last_batch_sequences);
    metrics.counter("llmserve_engine_steps_total", "Engine steps (forward passes).")
        .advance_to(static_cast<double>(stats.steps));
    metrics
        .counter("llmserve_engine_step_sequences_total",
                 "Sum over steps of the sequences in the batch (divide by steps: mean batch "
                 "size).")
        .advance_to(static_cast<double>(stats.step_sequences_total));
    metrics.gauge("llmserve_kv_cache_blocks_total", "KV cache blocks.").set(stats.kv_blocks_total);
    metrics.gauge("llmserve_kv_cache_blocks_free", "Free KV cache blocks.")
        .set(stats.kv_blocks_free);
    metrics
        .counter("llmserve_prefix_cache_queries_total",
                 "Full prompt blocks looked up in the prefix cache.")
        .advance_to(static_cast<double>(stats.prefix_cache_queries));
    metrics
        .counter("llmserve_prefix_cache_hits_total",
                 "Full prompt blocks reused from the prefix cache instead of recomputed.")
        .advance_to(static_cast<double>(stats.prefix_cache_hits));
    metrics.counter("llmserve_engine_requests_cancelled_total", "Requests the engine cancelled.")
        .advance_to(static_cast<double>(stats.requests_cancelled));
    metrics.counter("llmserve_engine_requests_timed_out_total", "Requests that hit their deadline.")
        .advance_to(static_cast<double>(stats.requests_timed_out));
    metrics
        .counter("llmserve_engine_requests_failed_total",
                 "Requests the engine ended with an error (their clients got a 5xx/422 or an "
                 "error event).")
        .advance_to(static_cast<double>(stats.requests_failed));
    metrics
        .counter("llmserve_engine_step_failures_total",
                 "Engine steps that failed as a whole: every request in the step ended with the "
                 "error.")
        .advance_to(static_cast<double>(stats.step_failures));
}

void HttpServer::Impl::register_routes() {
    add_route("GET", "/health", true, [](const auto&, httplib::Response& res, const auto&) {
        res.set_content(R"({"status":"ok"})", kJsonType);
    });
    add_route("GET", "/ready", true, [this](const auto&, httplib::Response& res, const auto&) {
        // Not ready is an answer, not a refused request: it is not counted as a rejection.
        std::shared_ptr<engine::Engine> e;
        {
            std::lock_guard lock(engine_mutex);
            e = engine;
        }
        std::string reason;
        engine::EngineStats stats;
        if (shutting_down) {
            reason = "the server is shutting down";
        } else if (!e) {
            reason = "the model is still loading";
        } else if (stats = e->stats(); stats.waiting_requests >= config.max_queue) {
            reason = fmt::format("the queue is full ({} waiting, MAX_QUEUE={})",
                                 stats.waiting_requests, config.max_queue);
        }
        if (!reason.empty()) {
            send_error(res, not_ready(reason, 1));
            return;
        }
        res.set_content(json_text({{"status", "ready"},
                                   {"model", e->model().name()},
                                   {"running", stats.running_sequences},
                                   {"waiting", stats.waiting_requests}}),
                        kJsonType);
    });
    add_route("GET", "/metrics", true, [this](const auto&, httplib::Response& res, const auto&) {
        refresh_gauges();
        res.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    add_route("GET", "/info", false, [this](const auto&, httplib::Response& res, const auto&) {
        res.set_content(json_text(info_json()), kJsonType);
    });
    add_route("GET", "/v1/models", false, [this](const auto&, httplib::Response& res, const auto&) {
        const auto e = require_engine();
        const Json model = {{"id", e->model().name()},
                            {"object", "model"},
                            {"created", started_unix},
                            {"owned_by", "llmserve"},
                            {"max_model_len", e->model().config().n_positions}};
        res.set_content(json_text({{"object", "list"}, {"data", Json::array({model})}}), kJsonType);
    });
    add_route("POST", "/tokenize", false,
              [this](const httplib::Request& req, httplib::Response& res, const auto&) {
                  const auto e = require_engine();
                  const TokenizeRequest request =
                      parse_tokenize_request(req.body, request_limits(*e));
                  const auto ids = e->tokenizer().encode(request.prompt);
                  res.set_content(json_text({{"tokens", ids},
                                             {"count", ids.size()},
                                             {"max_model_len", e->model().config().n_positions}}),
                                  kJsonType);
              });
    add_route("POST", "/detokenize", false,
              [this](const httplib::Request& req, httplib::Response& res, const auto&) {
                  const auto e = require_engine();
                  const DetokenizeRequest request =
                      parse_detokenize_request(req.body, request_limits(*e));
                  res.set_content(json_text({{"prompt", e->tokenizer().decode(request.tokens)}}),
                                  kJsonType);
              });
    add_route("POST", "/generate", false,
              [this](const httplib::Request& req, httplib::Response& res, const auto& context) {
                  handle_generate(req, res, context);
              });
    add_route("POST", "/v1/completions", false,
              [this](const httplib::Request& req, httplib::Response& res, const auto& context) {
                  handle_completions(req, res, context);
              });
}

HttpServer::HttpServer(const ServerConfig& config, Logger& logger)
    : impl_(std::make_unique<Impl>(config, logger)) {}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
    return impl_->transport->bind();
}

void HttpServer::serve() {
    impl_->transport->serve();
}

void HttpServer::attach_engine(std::shared_ptr<engine::Engine> engine, double load_seconds) {
    {
        std::lock_guard lock(impl_->engine_mutex);
        impl_->engine = std::move(engine);
        impl_->model_load_seconds = load_seconds;
    }
    impl_->metrics.gauge("llmserve_model_load_seconds", "Time it took to load the model.")
        .set(load_seconds);
}

void HttpServer::shutdown(std::chrono::duration<double> grace) {
    Impl& impl = *impl_;
    impl.shutting_down = true;
    impl.transport->stop();  // no new connections; idle and half-read ones are closed
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(grace);
    {
        std::unique_lock lock(impl.jobs_mutex);
        if (!impl.jobs_changed.wait_until(lock, deadline, [&] { return impl.jobs.empty(); })) {
            impl.logger.warn("shutdown grace period over: cancelling generations",
                             {{"running", impl.jobs.size()}});
            for (const auto& job : impl.jobs) job->cancel();
            impl.jobs_changed.wait(lock, [&] { return impl.jobs.empty(); });
        }
    }
    impl.transport->drain(std::max(deadline, Clock::now()) + kShutdownWriteTime);
}

MetricsRegistry& HttpServer::metrics() {
    return impl_->metrics;
}

}  // namespace llmserve::server
