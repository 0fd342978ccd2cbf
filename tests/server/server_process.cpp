#include "server_process.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "server/config.h"

extern char** environ;

namespace llmserve::server::testing {
namespace {

std::vector<std::string> child_environment(const std::map<std::string, std::string>& overrides) {
    std::map<std::string, std::string> variables;
    for (char** entry = environ; *entry != nullptr; ++entry) {
        const std::string text(*entry);
        const auto equals = text.find('=');
        if (equals != std::string::npos)
            variables[text.substr(0, equals)] = text.substr(equals + 1);
    }
    // The server's own settings are unset in the child unless a test sets them.
    for (const SettingInfo& setting : setting_infos()) variables.erase(std::string(setting.env));
    variables["MODEL_NAME"] = embedded_model_dir();
    variables["HOST"] = "127.0.0.1";
    variables["PORT"] = "0";
    variables["LOG_FORMAT"] = "json";
    variables["THREADS"] = "1";
    variables["HF_HUB_OFFLINE"] = "1";  // never reach the network from a test
    for (const auto& [name, value] : overrides) variables[name] = value;
    std::vector<std::string> out;
    for (const auto& [name, value] : variables) out.push_back(name + "=" + value);
    return out;
}

// Spawns llmserve with stdout and stderr on a pipe; returns the pid and the pipe's read end.
std::pair<pid_t, int> spawn(const std::map<std::string, std::string>& environment,
                            const std::vector<std::string>& arguments) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[1]);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);

    std::vector<std::string> argv_strings = {LLMSERVE_BINARY};
    argv_strings.insert(argv_strings.end(), arguments.begin(), arguments.end());
    const std::vector<std::string> env_strings = child_environment(environment);
    std::vector<char*> argv, envp;
    for (const auto& s : argv_strings) argv.push_back(const_cast<char*>(s.c_str()));
    for (const auto& s : env_strings) envp.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    pid_t pid = -1;
    const int error =
        posix_spawn(&pid, LLMSERVE_BINARY, &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    if (error != 0) {
        close(pipe_fds[0]);
        throw std::runtime_error(std::string("cannot start " LLMSERVE_BINARY ": ") +
                                 std::strerror(error));
    }
    return {pid, pipe_fds[0]};
}

}  // namespace

std::string embedded_model_dir() {
    return LLMSERVE_SOURCE_DIR "/models/gpt2-brown-mini";
}

ServerProcess::ServerProcess(const std::map<std::string, std::string>& environment,
                             const std::vector<std::string>& arguments) {
    std::vector<std::string> args = {"serve"};
    args.insert(args.end(), arguments.begin(), arguments.end());
    const auto [pid, fd] = spawn(environment, args);
    pid_ = pid;
    reader_ = std::thread([this, fd = fd] { collect_output(fd); });

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        if (port_ == 0) {
            for (const auto& line : log_lines()) {
                if (line.value("msg", "") == "listening") port_ = line.at("port").get<int>();
            }
        }
        if (port_ != 0) {
            httplib::Headers headers;
            if (const auto keys = environment.find("API_KEYS"); keys != environment.end()) {
                headers.emplace("Authorization",
                                "Bearer " + keys->second.substr(0, keys->second.find(',')));
            }
            const auto response = client(std::chrono::seconds(5))->Get("/ready", headers);
            if (response && response->status == 200) return;
        }
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "llmserve did not become ready; output:\n" << output();
    if (!exit_status_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        exit_status_ = 128 + SIGKILL;
    }
    reader_.join();
    throw std::runtime_error("llmserve did not become ready");
}

ServerProcess::~ServerProcess() {
    if (!exit_status_) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
}

void ServerProcess::collect_output(int fd) {
    char buffer[4096];
    while (true) {
        const ssize_t n = read(fd, buffer, sizeof(buffer));
        if (n <= 0) break;
        std::lock_guard lock(mutex_);
        output_.append(buffer, static_cast<std::size_t>(n));
    }
    close(fd);
}

std::unique_ptr<httplib::Client> ServerProcess::client(std::chrono::seconds read_timeout) const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client->set_read_timeout(read_timeout);
    client->set_connection_timeout(std::chrono::seconds(5));
    return client;
}

std::optional<int> ServerProcess::stop(int signal, std::chrono::milliseconds timeout) {
    if (exit_status_) return exit_status_;
    if (signal != 0) kill(pid_, signal);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return exit_status_;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
}

std::string ServerProcess::output() const {
    std::lock_guard lock(mutex_);
    return output_;
}

std::vector<nlohmann::json> ServerProcess::log_lines() const {
    std::vector<nlohmann::json> lines;
    std::istringstream in(output());
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line.front() != '{') continue;
        auto parsed = nlohmann::json::parse(line, nullptr, false);
        if (!parsed.is_discarded()) lines.push_back(std::move(parsed));
    }
    return lines;
}

std::pair<int, std::string> run_llmserve(const std::map<std::string, std::string>& environment,
                                         const std::vector<std::string>& arguments) {
    const auto [pid, fd] = spawn(environment, arguments);
    std::string output;
    char buffer[4096];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd readable{fd, POLLIN, 0};
        if (left.count() <= 0 || poll(&readable, 1, static_cast<int>(left.count())) <= 0) {
            ADD_FAILURE() << "llmserve did not exit within 60 s; output:\n" << output;
            kill(pid, SIGKILL);
            break;
        }
        const ssize_t n = read(fd, buffer, sizeof(buffer));
        if (n <= 0) break;
        output.append(buffer, static_cast<std::size_t>(n));
    }
    close(fd);
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

EventStream parse_event_stream(const std::string& body) {
    EventStream stream;
    std::istringstream in(body);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.starts_with("data: ")) {
            EXPECT_TRUE(line.empty()) << "unexpected line in event stream: " << line;
            continue;
        }
        const std::string payload = line.substr(6);
        EXPECT_FALSE(stream.done) << "data after [DONE]: " << payload;
        if (payload == "[DONE]") {
            stream.done = true;
            continue;
        }
        stream.events.push_back(nlohmann::json::parse(payload));
    }
    return stream;
}

httplib::Result post_json(httplib::Client& client, const std::string& path,
                          const nlohmann::json& body, const httplib::Headers& headers) {
    auto result = client.Post(path, headers, body.dump(), "application/json");
    EXPECT_TRUE(result) << "POST " << path << " failed: " << httplib::to_string(result.error());
    return result;
}

double metric_value(const std::string& metrics_text, const std::string& sample) {
    std::istringstream in(metrics_text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.size() > sample.size() && line.starts_with(sample) && line[sample.size()] == ' ') {
            return std::stod(line.substr(sample.size() + 1));
        }
    }
    return 0;
}

bool valid_utf8(const std::string& text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto byte = static_cast<unsigned char>(text[i]);
        const std::size_t length = byte < 0x80         ? 1
                                   : (byte >> 5) == 6  ? 2
                                   : (byte >> 4) == 14 ? 3
                                   : (byte >> 3) == 30 ? 4
                                                       : 0;
        if (length == 0 || i + length > text.size()) return false;
        for (std::size_t k = 1; k < length; ++k) {
            if ((static_cast<unsigned char>(text[i + k]) >> 6) != 2) return false;
        }
        i += length;
    }
    return true;
}

}  // namespace llmserve::server::testing
