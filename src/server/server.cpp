#include "server/server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "common/error.h"
#include "model/model.h"
#include "server/api_routes.h"
#include "server/auth.h"
#include "server/connection_probe.h"
#include "server/errors.h"
#include "server/generation_path.h"
#include "server/http_transport.h"
#include "server/playground.h"
#include "server/rate_limiter.h"
#include "server/request_log.h"
#include "server/serving_state.h"
#include "server/status.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;

constexpr const char* kJsonType = "application/json";
// HTTP worker threads beyond those that can wait on generations: probes, metrics, tokenize.
constexpr int kSpareHttpThreads = 32;
// Pending connections the kernel holds for accept().
constexpr int kListenBacklog = 4096;
// How long a browser may reuse a CORS preflight's answer (Chrome caps it at 2 hours).
constexpr int kPreflightMaxAgeSeconds = 7200;
// After the shutdown grace, how long responses may still take to be written.
constexpr auto kShutdownWriteTime = std::chrono::seconds(2);

// Whether a Content-Type header names JSON: "application/json", any case, with or without
// parameters such as "; charset=utf-8".
bool is_json_content_type(std::string_view content_type) {
    std::string_view media_type = content_type.substr(0, content_type.find(';'));
    while (!media_type.empty() && (media_type.back() == ' ' || media_type.back() == '\t')) {
        media_type.remove_suffix(1);
    }
    while (!media_type.empty() && (media_type.front() == ' ' || media_type.front() == '\t')) {
        media_type.remove_prefix(1);
    }
    constexpr std::string_view kJson = "application/json";
    return media_type.size() == kJson.size() &&
           std::equal(media_type.begin(), media_type.end(), kJson.begin(), [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == b;
           });
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

ApiResponse json_response(const Json& body) {
    ApiResponse response;
    response.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
    return response;
}

}  // namespace

// The HTTP layer: the route table, then for every request an id, auth, rate limit, the route,
// the JSON error of whatever it threw, and the request's metrics and log line.
struct HttpServer::Impl {
    using Handler = std::function<ApiResponse(const ApiCall&)>;
    struct Route {
        std::string method;
        std::string path;
        bool probe;         // /health, /ready, /metrics: never rate limited, optionally open
        ErrorStyle errors;  // how its errors are mapped (the OpenAI routes: 400, not 422)
        Handler handler;
    };

    Impl(const ServerConfig& server_config, Logger& server_logger);

    void register_routes();
    void add_route(std::string method, std::string path, bool probe, ErrorStyle errors,
                   Handler handler);
    void handle(const httplib::Request& req, httplib::Response& res);
    void add_cors_headers(const httplib::Request& req, httplib::Response& res) const;
    void answer_preflight(const httplib::Request& req, httplib::Response& res);
    void dispatch(const Route& route, const httplib::Request& req, httplib::Response& res);
    void send(const std::shared_ptr<RequestContext>& context, ApiResponse answer,
              httplib::Response& res);
    void answer_unmatched(const httplib::Request& req, httplib::Response& res);
    void answer_protocol_error(const httplib::Request& req, httplib::Response& res, int status,
                               const std::string& message);
    std::shared_ptr<RequestContext> make_context(const httplib::Request& req,
                                                 std::string route) const;
    void check_access(const Route& route, const httplib::Request& req, RequestContext& context);
    void send_error(httplib::Response& res, const ApiError& error);
    void finish_request(const RequestContext& context, int status) {
        record_request(metrics, logger, context, status);
    }
    void count_rejection(const std::string& reason) { count_rejected_request(metrics, reason); }
    ApiResponse ready();

    const ServerConfig config;
    Logger& logger;
    MetricsRegistry metrics;
    ServingState state;
    const ApiKeyAuthenticator auth;
    std::optional<RateLimiter> rate_limiter;
    std::unique_ptr<HttpTransport> transport;
    const Playground playground;
    std::vector<Route> routes;
    const long long started_unix;
};

HttpServer::Impl::Impl(const ServerConfig& server_config, Logger& server_logger)
    : config(server_config),
      logger(server_logger),
      state(config, metrics, server_logger),
      auth(server_config.api_keys),
      playground(config.web_dir, server_logger),
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
                                 ErrorStyle errors, Handler handler) {
    routes.push_back(Route{std::move(method), std::move(path), probe, errors, std::move(handler)});
}

void HttpServer::Impl::handle(const httplib::Request& req, httplib::Response& res) {
    // Set first, so that every answer carries them: errors, streams and the playground too.
    add_cors_headers(req, res);
    if (req.method == "OPTIONS") {
        answer_preflight(req, res);
        return;
    }
    // HEAD is GET without the body (the transport leaves it out).
    const std::string_view method =
        req.method == "HEAD" ? std::string_view("GET") : std::string_view(req.method);
    for (const Route& route : routes) {
        if (route.path == req.path && route.method == method) {
            dispatch(route, req, res);
            return;
        }
    }
    if (playground.serve(req, res)) return;
    answer_unmatched(req, res);
}

// A browser may read the answer to a request from another site only when the request's Origin
// is allowed by CORS_ALLOW_ORIGINS; the answer then names it.
void HttpServer::Impl::add_cors_headers(const httplib::Request& req, httplib::Response& res) const {
    if (config.cors_allow_origins.empty()) return;
    res.set_header("Vary", "Origin");  // caches must not hand one origin's answer to another
    if (const auto allowed = config.cors_allowed_origin(req.get_header_value("Origin"))) {
        res.set_header("Access-Control-Allow-Origin", *allowed);
        res.set_header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
    }
}

// OPTIONS on a route: the methods it takes, and what a browser's CORS preflight asks for (no
// key needed: browsers never send one with a preflight).
void HttpServer::Impl::answer_preflight(const httplib::Request& req, httplib::Response& res) {
    std::string methods;
    for (const Route& route : routes) {
        if (route.path == req.path) methods += route.method + ", ";
    }
    if (methods.empty()) {
        answer_unmatched(req, res);
        return;
    }
    const auto context = make_context(req, req.path);
    methods += "OPTIONS";
    res.status = 204;
    res.set_header("X-Request-Id", context->id);
    res.set_header("Allow", methods);
    if (res.has_header("Access-Control-Allow-Origin")) {
        res.set_header("Access-Control-Allow-Methods", methods);
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.set_header("Access-Control-Max-Age", std::to_string(kPreflightMaxAgeSeconds));
    }
    finish_request(*context, res.status);
}

void HttpServer::Impl::dispatch(const Route& route, const httplib::Request& req,
                                httplib::Response& res) {
    const auto context = make_context(req, route.path);
    context->probe = route.probe;
    res.set_header("X-Request-Id", context->id);
    try {
        check_access(route, req, *context);
        // Every POST route takes a JSON body. Requiring its type also stops cross-site HTML
        // forms, which can only send text/plain, urlencoded or multipart bodies.
        if (route.method == "POST" && !is_json_content_type(req.get_header_value("Content-Type"))) {
            throw Rejection{unsupported_media_type(truncated(req.get_header_value("Content-Type"))),
                            "validation"};
        }
        ApiCall call;
        call.body = req.body;
        call.context = context;
        // The socket is looked up when a generation first asks (not for every probe route).
        auto probe = std::make_shared<std::optional<ConnectionProbe>>();
        call.client_gone = [probe, port = req.local_port, address = req.remote_addr,
                            peer_port = req.remote_port] {
            if (!*probe) probe->emplace(ConnectionProbe::find(port, address, peer_port));
            return (*probe)->client_gone();
        };
        send(context, route.handler(call), res);
    } catch (const Rejection& rejection) {
        count_rejection(rejection.reason);
        send_error(res, rejection.error);
    } catch (...) {
        const ApiError error = api_error_from(std::current_exception(), route.errors);
        if (const auto reason = rejection_reason(error)) count_rejection(*reason);
        send_error(res, error);
    }
    if (!context->streaming) finish_request(*context, res.status == -1 ? 200 : res.status);
}

void HttpServer::Impl::send(const std::shared_ptr<RequestContext>& context, ApiResponse answer,
                            httplib::Response& res) {
    res.status = answer.status;
    for (const auto& [name, value] : answer.headers) res.set_header(name, value);
    if (!answer.stream) {
        res.set_content(std::move(answer.body), answer.content_type);
        return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // tells proxies such as nginx not to buffer
    auto stream = std::make_shared<ApiResponse>(std::move(answer));
    res.set_chunked_content_provider(
        stream->content_type,
        [stream](std::size_t, httplib::DataSink& sink) {
            stream->stream(
                [&sink](std::string_view bytes) { return sink.write(bytes.data(), bytes.size()); });
            sink.done();
            return true;
        },
        [this, stream, context](bool) noexcept {
            // Runs when the response is destroyed: after the stream, or instead of it when the
            // client went away before the first byte.
            try {
                if (stream->on_close) stream->on_close();
                finish_request(*context, 200);
            } catch (const std::exception& e) {
                logger.error("request accounting failed", {{"error", e.what()}});
            }
        });
}

void HttpServer::Impl::check_access(const Route& route, const httplib::Request& req,
                                    RequestContext& context) {
    bool key_refused = false;
    std::string header;
    if (auth.enabled() && !(route.probe && config.auth_exempt_probes)) {
        header = req.get_header_value("Authorization");
        context.key_index = auth.authenticate(header);
        key_refused = !context.key_index;
    }
    // Refused keys are charged too (to the client's address): guessing keys is rate limited.
    if (rate_limiter && !route.probe) {
        const std::string key = context.key_index ? fmt::format("key:{}", *context.key_index)
                                                  : "address:" + req.remote_addr;
        const RateLimiter::Decision decision = rate_limiter->acquire(key);
        if (!decision.allowed) throw Rejection{rate_limited(decision.retry_after_s), "rate_limit"};
    }
    if (key_refused) throw Rejection{unauthorized(!header.empty()), "auth"};
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
        // Not counted as a rejection: scanners probing paths are not invalid API requests.
        error = route_not_found(req.method, context->path);
    } else {
        error = method_not_allowed(req.method, req.path, allowed);
        res.set_header("Allow", allowed);
        context->route = req.path;
        if (const auto reason = rejection_reason(error)) count_rejection(*reason);
    }
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
    add_cors_headers(req, res);
    const ApiError error = protocol_error(status, message);
    if (const auto reason = rejection_reason(error)) count_rejection(*reason);
    res.set_header("X-Request-Id", context->id);
    res.set_header("Connection", "close");
    send_error(res, error);
    finish_request(*context, res.status);
}

ApiResponse HttpServer::Impl::ready() {
    // Not ready is an answer, not a refused request: it is not counted as a rejection.
    const std::shared_ptr<engine::Engine> e = state.engine_if_loaded();
    std::string reason;
    engine::EngineStats stats;
    if (state.shutting_down()) {
        reason = "the server is shutting down";
    } else if (!e) {
        reason = "the model is still loading";
    } else if (stats = e->stats(); stats.waiting_requests >= config.max_queue) {
        reason = fmt::format("the queue is full ({} waiting, MAX_QUEUE={})", stats.waiting_requests,
                             config.max_queue);
    }
    if (!reason.empty()) {
        const ApiError error = not_ready(reason, 1);
        ApiResponse answer;
        answer.status = error.status;
        answer.body = error.body();
        answer.headers = {{"Retry-After", std::to_string(*error.retry_after_s)}};
        return answer;
    }
    return json_response({{"status", "ready"},
                          {"model", e->model().name()},
                          {"running", stats.running_sequences},
                          {"waiting", stats.waiting_requests}});
}

void HttpServer::Impl::register_routes() {
    constexpr ErrorStyle kNative = ErrorStyle::kNative;
    constexpr ErrorStyle kOpenAi = ErrorStyle::kOpenAi;
    add_route("GET", "/health", true, kNative, [](const ApiCall&) {
        ApiResponse answer;
        answer.body = R"({"status":"ok"})";
        return answer;
    });
    add_route("GET", "/ready", true, kNative, [this](const ApiCall&) { return ready(); });
    add_route("GET", "/metrics", true, kNative, [this](const ApiCall&) {
        refresh_gauges(state);
        ApiResponse answer;
        answer.content_type = "text/plain; version=0.0.4; charset=utf-8";
        answer.body = metrics.render();
        return answer;
    });
    add_route("GET", "/info", false, kNative,
              [this](const ApiCall&) { return json_response(info_json(state, auth.enabled())); });
    add_route("GET", "/v1/models", false, kOpenAi,
              [this](const ApiCall&) { return models_route(state, started_unix); });
    add_route("POST", "/tokenize", false, kNative,
              [this](const ApiCall& call) { return tokenize_route(state, call); });
    add_route("POST", "/detokenize", false, kNative,
              [this](const ApiCall& call) { return detokenize_route(state, call); });
    add_route("POST", "/generate", false, kNative,
              [this](const ApiCall& call) { return generate_route(state, call); });
    add_route("POST", "/v1/completions", false, kOpenAi,
              [this](const ApiCall& call) { return completions_route(state, call); });
    add_route("POST", "/v1/chat/completions", false, kOpenAi,
              [this](const ApiCall& call) { return chat_route(state, call); });
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

void HttpServer::attach_engine(std::shared_ptr<engine::Engine> engine, double load_seconds,
                               std::optional<chat::ChatTemplate> chat_template) {
    const model::Model& model = engine->model();
    impl_->metrics
        .gauge("llmserve_build_info", "1, labelled with the version, the device and the model.",
               {{"version", LLMSERVE_VERSION},
                {"device", model.device_name()},
                {"model", model.name()}})
        .set(1);
    impl_->state.attach(LoadedModel{std::move(engine), std::move(chat_template)}, load_seconds);
    impl_->metrics.gauge("llmserve_model_load_seconds", "Time it took to load the model.")
        .set(load_seconds);
}

void HttpServer::shutdown(std::chrono::duration<double> grace) {
    Impl& impl = *impl_;
    impl.state.begin_shutdown();
    impl.transport->stop();  // no new connections; idle and half-read ones are closed
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(grace);
    if (!impl.state.wait_for_generations(deadline)) {
        impl.logger.warn("shutdown grace period over: cancelling generations",
                         {{"running", impl.state.running_jobs()}});
        impl.state.cancel_generations();
    }
    impl.transport->drain(std::max(deadline, Clock::now()) + kShutdownWriteTime);
}

MetricsRegistry& HttpServer::metrics() {
    return impl_->metrics;
}

}  // namespace llmserve::server
