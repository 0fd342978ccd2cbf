#include "cli/serve_command.h"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "backend/device.h"
#include "chat/chat_template.h"
#include "common/error.h"
#include "common/memory.h"
#include "engine/engine.h"
#include "hub/hub.h"
#include "hub/progress.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "server/config.h"
#include "server/logger.h"
#include "server/server.h"
#include "server/system_memory.h"
#include "tokenizer/tokenizer.h"

namespace llmserve::cli {
namespace {

using server::ServerConfig;

// The write end of the self-pipe that the SIGINT/SIGTERM handler signals through. A signal
// handler can reach nothing but globals; this is the only one, set once before handlers exist.
std::atomic<int> shutdown_pipe_write{-1};

extern "C" void on_shutdown_signal(int signal_number) {
    const auto byte = static_cast<unsigned char>(signal_number);
    const int saved_errno = errno;
    [[maybe_unused]] const ssize_t written = ::write(shutdown_pipe_write.load(), &byte, 1);
    errno = saved_errno;
}

// Installs the handlers; returns the read end of the pipe. Handlers (not sigwait) because
// threads that libraries start before main (OpenBLAS) would otherwise receive the signal with
// its default action, killing the process.
int install_shutdown_handlers() {
    int fds[2];
    if (::pipe(fds) != 0) fail(ErrorCode::kInternal, "pipe() failed: {}", std::strerror(errno));
    shutdown_pipe_write = fds[1];
    struct sigaction action {};
    action.sa_handler = on_shutdown_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the server
    return fds[0];
}

// Blocks until SIGINT or SIGTERM; returns its number.
int wait_for_shutdown_signal(int pipe_read) {
    unsigned char byte = 0;
    while (::read(pipe_read, &byte, 1) < 0 && errno == EINTR) {
    }
    return byte;
}

constexpr double kMiB = 1024.0 * 1024.0;

// Builds the engine; a KV_CACHE_MB below one full context (which the engine refuses without
// naming the setting) is reported as that setting's error, with the minimum for this model.
std::shared_ptr<engine::Engine> make_engine(const ServerConfig& config,
                                            std::shared_ptr<const model::Model> model,
                                            std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
                                            const engine::EngineOptions& options,
                                            const engine::KvCacheGeometry& kv) {
    try {
        return std::make_shared<engine::Engine>(model, std::move(tokenizer), options);
    } catch (const Error& error) {
        if (error.code() != ErrorCode::kInvalidArgument || config.kv_cache_mb == 0 ||
            options.kv_cache_bytes >= kv.one_context_bytes()) {
            throw;
        }
        fail_param("KV_CACHE_MB",
                   "KV_CACHE_MB={} is invalid for model {}: {}; expected at least {} (one full "
                   "context of {} tokens), or 0 = auto",
                   config.kv_cache_mb, model->name(), error.what(),
                   static_cast<std::size_t>(std::ceil(kv.one_context_bytes() / kMiB)),
                   model->config().n_positions);
    }
}

// The chat template: CHAT_TEMPLATE's file (a malformed one stops start-up), else the model's own
// (a malformed one is logged and chat is refused: the other APIs still serve the model).
std::optional<chat::ChatTemplate> load_chat_template(const ServerConfig& config,
                                                     const std::filesystem::path& dir,
                                                     server::Logger& logger) {
    if (!config.chat_template.empty()) {
        try {
            return chat::ChatTemplate::load(dir, config.chat_template);
        } catch (const Error& e) {
            fail_param("CHAT_TEMPLATE", "CHAT_TEMPLATE={} is not a usable chat template: {}",
                       config.chat_template, e.what());
        }
    }
    try {
        auto found = chat::ChatTemplate::load(dir);
        logger.info("chat template", {{"found", found.has_value()}});
        return found;
    } catch (const Error& e) {
        logger.warn("the model's chat template cannot be used; chat is refused",
                    {{"error", e.what()}});
        return std::nullopt;
    }
}

std::shared_ptr<engine::Engine> load_engine(const ServerConfig& config, server::Logger& logger,
                                            double& load_seconds,
                                            std::optional<chat::ChatTemplate>& chat_template) {
    // A directory as is; a Hub name through the Hugging Face cache (CACHE_DIR an extra root),
    // downloading when needed.
    hub::HubOptions hub_options = hub::HubOptions::from_environment();
    if (!config.cache_dir.empty()) hub_options.extra_cache_dirs.emplace_back(config.cache_dir);
    const auto progress = hub::make_stderr_progress();
    const std::filesystem::path dir =
        hub::resolve_model(config.model_name, hub_options, progress.get());
    const std::uint64_t needed = std::filesystem::is_regular_file(dir)
                                     ? model::gguf_memory_estimate(dir, config.dtype)
                                     : server::estimate_model_memory_bytes(dir, config.dtype);
    if (const auto available = server::available_memory_bytes()) {
        server::check_model_fits(dir, needed, *available);
    }
    const auto start = std::chrono::steady_clock::now();
    backend::DeviceChoice device = backend::select_device(
        config.device, {.threads = config.threads, .cuda_graphs = config.cuda_graphs});
    logger.info("device", {{"device", device.backend->name()}, {"reason", device.reason}});
    model::LoadOptions options;
    options.backend = std::move(device.backend);
    options.weight_format = config.dtype;
    auto model = model::Model::load(dir, options);
    auto tokenizer =
        std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::from_directory(dir));
    const int n_positions = model->config().n_positions;
    if (config.max_length >= n_positions) {
        fail_param("MAX_LENGTH",
                   "MAX_LENGTH={} is invalid for model {}: expected at most {} (its context is {} "
                   "tokens and a prompt takes at least one)",
                   config.max_length, model->name(), n_positions - 1, n_positions);
    }
    engine::EngineOptions engine_options;
    engine_options.max_running_sequences = config.max_concurrent_requests;
    engine_options.max_waiting_requests = config.max_queue;
    engine_options.max_step_tokens = config.max_batch_tokens;
    engine_options.kv_format = config.kv_cache_dtype;
    const engine::KvCacheGeometry kv = engine::kv_cache_geometry(
        model->config(), engine_options.kv_block_tokens, engine_options.kv_format);
    // Measured now, after the weights are in memory, so the auto budget leaves room for them.
    engine_options.kv_cache_bytes =
        config.kv_cache_mb > 0
            ? static_cast<std::size_t>(config.kv_cache_mb) << 20
            : server::auto_kv_cache_bytes(kv.one_context_bytes(),
                                          kv.one_context_bytes() * config.max_concurrent_requests,
                                          server::available_memory_bytes());
    auto engine = make_engine(config, model, tokenizer, engine_options, kv);
    chat_template = load_chat_template(config, dir, logger);
    load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int kv_blocks = engine->stats().kv_blocks_total;
    logger.info("model loaded",
                {{"model", model->name()},
                 {"path", dir.string()},
                 {"device", model->device_name()},
                 {"dtype", model->dtype()},
                 {"parameters", model->parameter_count()},
                 {"kv_cache_mib", std::round(kv_blocks * kv.block_bytes / kMiB * 10) / 10},
                 {"kv_cache_blocks", kv_blocks},
                 {"kv_cache_tokens", kv_blocks * engine_options.kv_block_tokens},
                 {"kv_cache_budget", config.kv_cache_mb > 0 ? "KV_CACHE_MB" : "auto"},
                 {"kv_cache_dtype", backend::to_string(engine_options.kv_format)},
                 {"max_batch_tokens", config.max_batch_tokens},
                 {"load_s", std::round(load_seconds * 1000) / 1000}});
    return engine;
}

void print_ready_banner(const ServerConfig& config, int port, const std::string& model_name) {
    const bool any_address = config.host == "0.0.0.0" || config.host == "::";
    const std::string host = any_address                                  ? "127.0.0.1"
                             : config.host.find(':') != std::string::npos ? "[" + config.host + "]"
                                                                          : config.host;
    const std::string url = fmt::format("http://{}:{}", host, port);
    const std::string auth =
        config.api_keys.empty() ? "" : " -H \"Authorization: Bearer $API_KEY\"";
    std::cout << fmt::format(
                     "llmserve is ready: model {} at {}\n"
                     "Try:\n"
                     "  curl -s {}/generate -H 'Content-Type: application/json'{} \\\n"
                     "    -d '{{\"prompt\": \"The jury said\", \"max_length\": 30}}'\n"
                     "Stop with Ctrl+C.\n",
                     model_name, url, url, auth)
              << std::flush;
}

void run_serve(const ServerConfig& config) {
    cap_malloc_arenas();  // before the server's threads start
    const int signal_pipe = install_shutdown_handlers();
    server::Logger logger(config.log_level, config.log_format);
    std::shared_ptr<engine::Engine> engine;  // outlives the server that uses it
    server::HttpServer http(config, logger);
    const int port = http.bind();
    std::thread serving([&] { http.serve(); });
    logger.info("listening", {{"host", config.host}, {"port", port}});

    // A signal while the model downloads or loads: nothing is served yet, so the process exits at
    // once rather than after the load (a stalled download could take minutes to give up). A
    // partial download resumes on the next start.
    std::atomic<bool> loading{true};
    std::thread load_watch([&] {
        pollfd signal_ready{signal_pipe, POLLIN, 0};
        while (loading) {
            if (::poll(&signal_ready, 1, 50) <= 0 || !loading) continue;
            const int signal_number = wait_for_shutdown_signal(signal_pipe);
            logger.info("shutting down while the model loads",
                        {{"signal", strsignal(signal_number)}});
            std::fflush(nullptr);
            std::_Exit(0);
        }
    });
    double load_seconds = 0;
    std::optional<chat::ChatTemplate> chat_template;
    try {
        engine = load_engine(config, logger, load_seconds, chat_template);
    } catch (...) {
        loading = false;
        load_watch.join();
        http.shutdown(std::chrono::seconds(0));
        serving.join();
        throw;
    }
    loading = false;
    load_watch.join();
    http.attach_engine(engine, load_seconds, std::move(chat_template));
    print_ready_banner(config, port, engine->model().name());

    const int signal_number = wait_for_shutdown_signal(signal_pipe);
    logger.info("shutting down",
                {{"signal", strsignal(signal_number)}, {"grace_s", config.shutdown_grace_s}});
    http.shutdown(std::chrono::duration<double>(config.shutdown_grace_s));
    serving.join();
    logger.info("stopped");
}

}  // namespace

void register_serve_command(CLI::App& app) {
    CLI::App* command = app.add_subcommand(
        "serve",
        "Serve the model over HTTP (/generate, /v1/completions, ...). Every flag can also be "
        "set by the environment variable named in its description; flags win.");
    struct Flags {
        std::map<std::string, std::string, std::less<>> values;  // by environment name
        std::map<std::string, CLI::Option*, std::less<>> options;
        bool print_config = false;
    };
    auto flags = std::make_shared<Flags>();
    for (const server::SettingInfo& info : server::setting_infos()) {
        const std::string name(info.env);
        flags->options[name] = command->add_option(std::string(info.flag), flags->values[name],
                                                   fmt::format("{} [{}]", info.help, name));
    }
    command->add_flag("--print-config", flags->print_config,
                      "Print the effective configuration and where each value came from, then "
                      "exit");
    command->callback([flags] {
        std::map<std::string, std::string, std::less<>> given;
        for (const auto& [name, option] : flags->options) {
            if (option->count() > 0) given[name] = flags->values[name];
        }
        ServerConfig defaults;
        defaults.model_name = LLMSERVE_EMBEDDED_MODEL_DIR;
        const ServerConfig config =
            server::resolve_config(server::process_environment(), given, defaults);
        if (flags->print_config) {
            std::cout << server::describe_config(config);
            return;
        }
        run_serve(config);
    });
}

}  // namespace llmserve::cli
