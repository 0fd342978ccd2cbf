// End-to-end tests of what an attack on the server found (issue 17): one request's failure must not
// end the others, a model with NaN weights is refused, slow clients are cut off at a deadline and
// capped per address, shutdown is bounded, and the HTTP layer is strict. The real binary on
// loopback, each test bounded in time.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>

#include "server_process.h"

namespace llmserve::server::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A raw loopback connection, optionally from another 127.0.0.0/8 source address.
class Socket {
  public:
    explicit Socket(int port, const char* source = nullptr) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (source != nullptr) {
            sockaddr_in local{};
            local.sin_family = AF_INET;
            inet_pton(AF_INET, source, &local.sin_addr);
            ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local));
        }
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
        connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    }
    ~Socket() {
        if (fd_ >= 0) ::close(fd_);
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;

    bool connected() const { return connected_; }
    bool send(const std::string& data) {
        return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) ==
               static_cast<ssize_t>(data.size());
    }
    // Everything received until the peer closes or `timeout` passes; `closed` says which.
    std::string read_all(std::chrono::milliseconds timeout, bool* closed = nullptr) {
        std::string data;
        const auto deadline = Clock::now() + timeout;
        bool peer_closed = false;
        while (Clock::now() < deadline) {
            pollfd descriptor{fd_, POLLIN, 0};
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (::poll(&descriptor, 1, static_cast<int>(std::max<long>(left.count(), 0))) <= 0) {
                break;
            }
            char buffer[4096];
            const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
            if (n <= 0) {
                peer_closed = true;
                break;
            }
            data.append(buffer, static_cast<std::size_t>(n));
        }
        if (closed != nullptr) *closed = peer_closed;
        return data;
    }

  private:
    int fd_ = -1;
    bool connected_ = false;
};

int count_of(const std::string& text, const std::string& needle) {
    int count = 0;
    for (std::size_t at = text.find(needle); at != std::string::npos;
         at = text.find(needle, at + 1)) {
        ++count;
    }
    return count;
}

std::string metrics_text(const ServerProcess& server) {
    const auto result = server.client()->Get("/metrics");
    return result && result->status == 200 ? result->body : "";
}

// A copy of the embedded model whose tensor `name` (float16) holds NaN in elements
// [first, first + count).
fs::path model_with_nan(const std::string& tag, const std::string& name, std::size_t first,
                        std::size_t count) {
    const fs::path dir =
        fs::temp_directory_path() / ("llmserve-nan-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& entry : fs::directory_iterator(embedded_model_dir())) {
        fs::copy_file(entry.path(), dir / entry.path().filename());
    }
    std::fstream file(dir / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    std::uint64_t header_size = 0;
    file.read(reinterpret_cast<char*>(&header_size), sizeof(header_size));
    std::string header(header_size, '\0');
    file.read(header.data(), static_cast<std::streamsize>(header_size));
    const Json tensor = Json::parse(header).at(name);
    EXPECT_EQ(tensor.at("dtype"), "F16");
    const std::uint64_t begin = tensor.at("data_offsets")[0].get<std::uint64_t>();
    const std::uint16_t nan_f16 = 0x7e00;
    for (std::size_t i = first; i < first + count; ++i) {
        file.seekp(static_cast<std::streamoff>(8 + header_size + begin + 2 * i));
        file.write(reinterpret_cast<const char*>(&nan_f16), sizeof(nan_f16));
    }
    return dir;
}

Json long_greedy_stream(int tokens) {
    return {{"prompt", "The jury said"},
            {"max_length", tokens},
            {"temperature", 0},
            {"ignore_eos", true},
            {"stream", true}};
}

// The finish reason and text pieces of a /generate stream.
std::pair<std::string, int> stream_outcome(const httplib::Result& result) {
    if (!result) return {"(no response)", 0};
    const EventStream stream = parse_event_stream(result->body);
    for (const Json& event : stream.events) {
        if (event.value("done", false)) {
            return {event["results"][0]["finish_reason"].get<std::string>(),
                    event["results"][0]["generated_tokens"].get<int>()};
        }
    }
    return {"(no done event) " + result->body.substr(0, 300), 0};
}

// --- 1. One request never fails the others; no failure is silent ------------------------------

TEST(Hardening, TinyRepetitionPenaltyIsRefusedAndRunningStreamsContinue) {
    // The reproduction: a greedy stream, then a request with repetition_penalty 1e-38.
    ServerProcess server;
    constexpr int kTokens = 300;
    auto stream = std::async(std::launch::async, [&] {
        return post_json(*server.client(), "/generate", long_greedy_stream(kTokens));
    });
    std::this_thread::sleep_for(150ms);
    const auto refused = post_json(*server.client(), "/generate",
                                   {{"prompt", "Hello"}, {"repetition_penalty", 1e-38}});
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 422) << refused->body;
    const Json error = Json::parse(refused->body)["error"];
    EXPECT_EQ(error["param"], "repetition_penalty");
    EXPECT_NE(error["message"].get<std::string>().find("0.01"), std::string::npos);
    const auto [reason, tokens] = stream_outcome(stream.get());
    EXPECT_EQ(reason, "length");
    EXPECT_EQ(tokens, kTokens);
}

TEST(Hardening, NonFiniteLogitsEndOnlyTheirOwnRequestWithAnError) {
    // Position 500's embedding is NaN: only a sequence reaching position 500 gets NaN logits.
    const fs::path model = model_with_nan("wpe", "transformer.wpe.weight", 500 * 192, 192);
    ServerProcess server(Environment{{"MODEL_NAME", model.string()}});
    constexpr int kTokens = 400;  // the stream stays below position 500
    auto stream = std::async(std::launch::async, [&] {
        return post_json(*server.client(), "/generate", long_greedy_stream(kTokens));
    });
    std::this_thread::sleep_for(150ms);
    const Json long_prompt = Json(std::vector<int>(501, 464));  // its last row is position 500
    const auto failed = post_json(*server.client(), "/v1/completions",
                                  {{"prompt", long_prompt}, {"max_tokens", 3}});
    ASSERT_TRUE(failed);
    EXPECT_EQ(failed->status, 500) << failed->body;
    const Json error = Json::parse(failed->body)["error"];
    EXPECT_EQ(error["type"], "server_error");
    EXPECT_NE(error["message"].get<std::string>().find("non-finite logits"), std::string::npos)
        << error.dump();

    // Streamed, the same failure is an error event, then [DONE].
    const auto streamed = post_json(*server.client(), "/v1/completions",
                                    {{"prompt", long_prompt}, {"max_tokens", 3}, {"stream", true}});
    ASSERT_TRUE(streamed);
    const EventStream events = parse_event_stream(streamed->body);
    ASSERT_FALSE(events.events.empty()) << streamed->body;
    EXPECT_TRUE(events.events.back().contains("error")) << streamed->body;
    EXPECT_TRUE(events.done);

    const auto [reason, tokens] = stream_outcome(stream.get());
    EXPECT_EQ(reason, "length") << "a failure of another request ended this one";
    EXPECT_EQ(tokens, kTokens);

    const std::string metrics = metrics_text(server);
    EXPECT_EQ(metric_value(metrics, "llmserve_engine_requests_failed_total"), 2);
    EXPECT_EQ(metric_value(metrics, "llmserve_sequences_finished_total{reason=\"error\"}"), 2);
    EXPECT_EQ(metric_value(metrics, "llmserve_engine_step_failures_total"), 0);
    int logged = 0;
    for (const Json& line : server.log_lines()) {
        if (line.value("level", "") == "error" && line.contains("error") &&
            line["error"].get<std::string>().find("non-finite") != std::string::npos) {
            ++logged;
        }
    }
    EXPECT_EQ(logged, 2) << server.output();
    fs::remove_all(model);
}

TEST(Hardening, ModelWhoseWeightsHoldNaNIsRefusedAtLoad) {
    const fs::path model = model_with_nan("layer", "transformer.h.0.mlp.c_fc.weight", 1000, 1);
    for (const std::vector<std::string>& arguments :
         {std::vector<std::string>{"serve"},
          std::vector<std::string>{"generate", "--model", model.string(), "Hello"}}) {
        const auto [status, output] = run_llmserve({{"MODEL_NAME", model.string()}}, arguments);
        EXPECT_NE(status, 0) << output;
        EXPECT_NE(output.find("non-finite logits"), std::string::npos) << output;
        EXPECT_NE(output.find(model.filename().string()), std::string::npos)
            << "the message must name the model: " << output;
    }
    fs::remove_all(model);
}

// --- 2. Slow clients ---------------------------------------------------------------------------

TEST(Hardening, HalfSentRequestGets408AtTheReadDeadline) {
    ServerProcess server(Environment{{"REQUEST_READ_TIMEOUT_S", "1"}});
    Socket slow(server.port());
    ASSERT_TRUE(slow.send("POST /generate HTTP/1.1\r\nHost: x\r\n"));
    const auto start = Clock::now();
    bool closed = false;
    const std::string answer = slow.read_all(5s, &closed);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_NE(answer.find("HTTP/1.1 408"), std::string::npos) << answer;
    EXPECT_NE(answer.find("REQUEST_READ_TIMEOUT_S"), std::string::npos) << answer;
    EXPECT_TRUE(closed);
    EXPECT_LT(seconds, 2.5);
    EXPECT_EQ(metric_value(metrics_text(server), "llmserve_http_request_read_timeouts_total"), 1);
}

TEST(Hardening, ConnectionsPerClientAddressAreCapped) {
    ServerProcess server(Environment{{"MAX_CONNECTIONS_PER_CLIENT", "3"}});
    std::vector<std::unique_ptr<Socket>> held;
    for (int i = 0; i < 3; ++i)
        held.push_back(std::make_unique<Socket>(server.port(), "127.0.0.5"));
    std::this_thread::sleep_for(200ms);  // accepted and counted
    Socket over(server.port(), "127.0.0.5");
    bool closed = false;
    over.read_all(2s, &closed);
    EXPECT_TRUE(closed) << "a fourth connection from one address must be closed";
    // Another address is not affected.
    const auto health = server.client()->Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(metric_value(metrics_text(server),
                           "llmserve_http_connections_refused_total{reason=\"per_client_limit\"}"),
              1);
}

// --- 3. Shutdown is bounded --------------------------------------------------------------------

TEST(Hardening, ShutdownIsBoundedWhileClientsDripHeaderBytes) {
    ServerProcess server(Environment{{"SHUTDOWN_GRACE_S", "1"}});
    std::vector<std::unique_ptr<Socket>> drippers;
    for (int i = 0; i < 50; ++i) {
        drippers.push_back(std::make_unique<Socket>(server.port()));
        drippers.back()->send("GET /health HTTP/1.1\r\n");
    }
    std::atomic<bool> dripping{true};
    std::thread drip([&] {
        for (int n = 0; dripping; ++n) {
            for (auto& socket : drippers) socket->send("X-Drip-" + std::to_string(n) + ": 1\r\n");
            std::this_thread::sleep_for(200ms);
        }
    });
    std::this_thread::sleep_for(300ms);
    const auto start = Clock::now();
    const auto status = server.stop(SIGTERM, 10s);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    dripping = false;
    drip.join();
    ASSERT_TRUE(status.has_value()) << "did not exit within 10 s";
    EXPECT_EQ(*status, 0) << server.output();
    EXPECT_LT(seconds, 4.0);  // grace 1 s plus at most 2 s to write responses
}

// --- 5. HTTP strictness ------------------------------------------------------------------------

TEST(Hardening, PipelinedRequestsAreAnsweredInOrder) {
    ServerProcess server;
    Socket socket(server.port());
    ASSERT_TRUE(
        socket.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Content-Length: 19\r\n\r\n{\"prompt\": \"Hello\"}"
                    "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    bool closed = false;
    const std::string answers = socket.read_all(5s, &closed);
    EXPECT_TRUE(closed) << answers;
    const auto health = answers.find("\"status\":\"ok\"");
    const auto tokens = answers.find("\"tokens\":[15496]");
    const auto missing = answers.find("HTTP/1.1 404");
    ASSERT_NE(health, std::string::npos) << answers;
    ASSERT_NE(tokens, std::string::npos) << answers;
    ASSERT_NE(missing, std::string::npos) << answers;
    EXPECT_LT(health, tokens);
    EXPECT_LT(tokens, missing);
    EXPECT_EQ(count_of(answers, "HTTP/1.1 "), 3);
}

TEST(Hardening, AmbiguousFramingIsRefusedAtOnceAndTheConnectionClosed) {
    ServerProcess server(Environment{{"MAX_BODY_BYTES", "4096"}});
    struct Case {
        std::string name;
        std::string head;  // sent without any body
        std::string status;
    };
    const std::vector<Case> cases = {
        {"conflicting lengths",
         "POST /generate HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 12\r\n\r\n", "400"},
        {"chunked and a length",
         "POST /generate HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n",
         "400"},
        {"negative length", "POST /generate HTTP/1.1\r\nContent-Length: -5\r\n\r\n", "400"},
        {"oversized body", "POST /generate HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", "413"},
    };
    for (const Case& c : cases) {
        Socket socket(server.port());
        ASSERT_TRUE(socket.send(c.head));
        bool closed = false;
        const auto start = Clock::now();
        const std::string answer = socket.read_all(3s, &closed);
        EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 " + c.status) << c.name << ": " << answer;
        EXPECT_NE(answer.find("Connection: close"), std::string::npos) << c.name;
        EXPECT_NE(answer.find("\"error\""), std::string::npos) << c.name;
        EXPECT_TRUE(closed) << c.name;
        EXPECT_LT(Clock::now() - start, 2s) << c.name << " must not wait for a body";
    }
}

TEST(Hardening, ConnectionCloseIsHonouredOnErrors) {
    ServerProcess server;
    Socket socket(server.port());
    ASSERT_TRUE(socket.send(
        "POST /generate HTTP/1.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: 2\r\n\r\n{}"));
    bool closed = false;
    const std::string answer = socket.read_all(5s, &closed);
    EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 400") << answer;
    EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
    EXPECT_TRUE(closed);
}

}  // namespace
}  // namespace llmserve::server::testing
