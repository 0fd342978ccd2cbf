// End-to-end tests: the real llmserve binary serving the embedded model over HTTP on loopback.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <future>
#include <set>

#include "server_process.h"

namespace llmserve::server::testing {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

Json body_json(const httplib::Result& result) {
    if (!result) return Json();
    return Json::parse(result->body, nullptr, false);
}

Json model_config() {
    std::ifstream in(embedded_model_dir() + "/config.json");
    return Json::parse(in);
}

// Checks the error shape every failure must have, and returns the error object.
Json expect_error(const httplib::Result& result, int status, const std::string& param = "") {
    EXPECT_TRUE(result);
    if (!result) return Json();
    EXPECT_EQ(result->status, status) << result->body;
    EXPECT_EQ(result->get_header_value("Content-Type"), "application/json");
    const Json body = body_json(result);
    EXPECT_TRUE(body.contains("error")) << result->body;
    const Json& error = body["error"];
    for (const char* key : {"message", "type", "param", "code"}) {
        EXPECT_TRUE(error.contains(key)) << key << " missing in " << result->body;
    }
    EXPECT_TRUE(error["message"].is_string() && !error["message"].get<std::string>().empty());
    if (!param.empty()) {
        EXPECT_EQ(error["param"], param) << result->body;
    }
    return error;
}

// A raw HTTP/1.1 client whose connection the test closes at a chosen moment.
class RawConnection {
  public:
    explicit RawConnection(int port) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
        EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    }
    ~RawConnection() { close(); }
    void send_post(const std::string& path, const std::string& body) {
        const std::string request =
            "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
            "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n\r\n" + body;
        EXPECT_EQ(::send(fd_, request.data(), request.size(), 0),
                  static_cast<ssize_t>(request.size()));
    }
    // Reads until `needle` appears (or the peer closes); returns what was read.
    std::string read_until(const std::string& needle) {
        std::string data;
        char buffer[1024];
        while (data.find(needle) == std::string::npos) {
            const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
            if (n <= 0) break;
            data.append(buffer, static_cast<std::size_t>(n));
        }
        return data;
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_ = -1;
};

std::string metrics_text(const ServerProcess& server) {
    const auto result = server.client()->Get("/metrics");
    EXPECT_TRUE(result && result->status == 200);
    return result ? result->body : "";
}

// Polls /metrics until `sample` reaches `at_least` (or the timeout); returns its last value.
double wait_for_metric(const ServerProcess& server, const std::string& sample, double at_least,
                       std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    double value = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        value = metric_value(metrics_text(server), sample);
        if (value >= at_least) break;
        std::this_thread::sleep_for(5ms);
    }
    return value;
}

// A long generation: as many tokens as the context allows, EOS ignored.
Json long_generation(bool stream = false) {
    return {{"prompt", "The jury said"},
            {"max_length", model_config()["n_positions"].get<int>() - 8},
            {"ignore_eos", true},
            {"stream", stream},
            {"seed", 7}};
}

TEST(ServerE2ETest, ProbesInfoAndModels) {
    ServerProcess server;
    auto client = server.client();
    const auto health = client->Get("/health");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    EXPECT_EQ(body_json(health)["status"], "ok");
    const auto ready = client->Get("/ready");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200);

    const Json config = model_config();
    const Json info = body_json(client->Get("/info"));
    EXPECT_EQ(info["model"]["name"], "gpt2-brown-mini");
    EXPECT_EQ(info["model"]["n_positions"], config["n_positions"]);
    EXPECT_EQ(info["model"]["vocab_size"], config["vocab_size"]);
    EXPECT_EQ(info["model"]["n_layer"], config["n_layer"]);
    EXPECT_EQ(info["device"], "cpu");
    EXPECT_TRUE(info["version"].is_string());
    EXPECT_EQ(info["limits"]["request_timeout_s"], 30.0);
    // The checkpoint's dtypes cover every parameter; every matrix has a compute format (token
    // and position embeddings, then four per layer: the head is tied).
    std::size_t stored_parameters = 0;
    for (const auto& [dtype, share] : info["model"]["stored_dtypes"].items())
        stored_parameters += share["parameters"].get<std::size_t>();
    EXPECT_EQ(stored_parameters, info["model"]["parameters"].get<std::size_t>());
    std::size_t matrices = 0;
    for (const auto& [format, count] : info["model"]["compute_formats"].items())
        matrices += count.get<std::size_t>();
    EXPECT_EQ(matrices, 2 + 4 * config["n_layer"].get<std::size_t>());

    const Json models = body_json(client->Get("/v1/models"));
    EXPECT_EQ(models["object"], "list");
    ASSERT_EQ(models["data"].size(), 1u);
    EXPECT_EQ(models["data"][0]["id"], "gpt2-brown-mini");
    EXPECT_EQ(models["data"][0]["object"], "model");
}

TEST(ServerE2ETest, GenerateReturnsResultsUsageTimingAndEchoesRequestId) {
    ServerProcess server;
    auto client = server.client();
    const auto tokenized =
        body_json(post_json(*client, "/tokenize", {{"prompt", "The jury said"}}));
    const auto result = post_json(*client, "/generate",
                                  {{"prompt", "The jury said"}, {"max_length", 12}, {"seed", 1}},
                                  {{"X-Request-Id", "test-request-42"}});
    ASSERT_TRUE(result);
    ASSERT_EQ(result->status, 200) << result->body;
    EXPECT_EQ(result->get_header_value("X-Request-Id"), "test-request-42");
    const Json body = body_json(result);
    EXPECT_EQ(body["model"], "gpt2-brown-mini");
    ASSERT_EQ(body["results"].size(), 1u);
    const Json& first = body["results"][0];
    EXPECT_EQ(first["index"], 0);
    EXPECT_EQ(first["prompt_index"], 0);
    EXPECT_TRUE(first["text"].is_string());
    const int generated = first["generated_tokens"].get<int>();
    EXPECT_GE(generated, 1);
    EXPECT_LE(generated, 12);
    EXPECT_EQ(first["finish_reason"], generated == 12 ? "length" : "eos");
    EXPECT_EQ(body["usage"]["prompt_tokens"], tokenized["count"]);
    EXPECT_EQ(body["usage"]["completion_tokens"], generated);
    EXPECT_EQ(body["usage"]["total_tokens"], tokenized["count"].get<int>() + generated);
    for (const char* key : {"queue_ms", "prefill_ms", "decode_ms", "tokens_per_second"}) {
        EXPECT_GE(body["timing"][key].get<double>(), 0.0) << key;
    }
    // Without an id of its own the client gets a generated one.
    const auto other = post_json(*client, "/tokenize", {{"prompt", "x"}});
    ASSERT_TRUE(other);
    EXPECT_FALSE(other->get_header_value("X-Request-Id").empty());

    // One log line for the request, carrying its id, status and token counts.
    std::this_thread::sleep_for(50ms);
    int lines = 0;
    for (const Json& line : server.log_lines()) {
        if (line.value("request_id", "") != "test-request-42") continue;
        ++lines;
        EXPECT_EQ(line["msg"], "request");
        EXPECT_EQ(line["status"], 200);
        EXPECT_EQ(line["path"], "/generate");
        EXPECT_EQ(line["completion_tokens"], generated);
        EXPECT_TRUE(line.contains("latency_ms"));
    }
    EXPECT_EQ(lines, 1) << server.output();
}

TEST(ServerE2ETest, BatchOfPromptsWithSeveralSamplesIsSeededAndDeterministic) {
    ServerProcess server;
    auto client = server.client();
    const Json request = {{"prompt", {"The jury said", "It was"}},
                          {"num_return_sequences", 2},
                          {"max_length", 6},
                          {"temperature", 1.0},
                          {"seed", 123}};
    const Json first = body_json(post_json(*client, "/generate", request));
    const Json second = body_json(post_json(*client, "/generate", request));
    ASSERT_EQ(first["results"].size(), 4u) << first.dump();
    std::vector<int> prompt_indices;
    for (std::size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(first["results"][i]["index"], i);
        prompt_indices.push_back(first["results"][i]["prompt_index"].get<int>());
        EXPECT_EQ(first["results"][i]["text"], second["results"][i]["text"]) << i;
    }
    EXPECT_EQ(prompt_indices, (std::vector<int>{0, 0, 1, 1}));
    int completion = 0;
    for (const Json& result : first["results"]) completion += result["generated_tokens"].get<int>();
    EXPECT_EQ(first["usage"]["completion_tokens"], completion);
}

TEST(ServerE2ETest, StreamConcatenationEqualsTheNonStreamedTextAndUtf8StaysIntact) {
    ServerProcess server;
    auto client = server.client();
    // Bias generation towards the byte tokens of multi-byte characters so that pieces of
    // characters are produced, which the stream must never split.
    const Json ids = body_json(post_json(*client, "/tokenize", {{"prompt", "语言 ü 😀"}}))["tokens"];
    Json bias = Json::object();
    for (const Json& id : ids) bias[std::to_string(id.get<int>())] = 8.0;
    for (const Json& base :
         {Json{{"prompt", "The jury said"}, {"max_length", 40}},
          Json{{"prompt", "Text:"}, {"max_length", 40}, {"logit_bias", bias}},
          Json{{"prompt", {"A", "B"}}, {"max_length", 10}, {"num_return_sequences", 2}}}) {
        Json request = base;
        request["seed"] = 99;
        request["temperature"] = 1.0;
        const Json whole = body_json(post_json(*client, "/generate", request));
        request["stream"] = true;
        const auto streamed = post_json(*client, "/generate", request);
        ASSERT_TRUE(streamed);
        EXPECT_EQ(streamed->status, 200);
        EXPECT_NE(streamed->get_header_value("Content-Type").find("text/event-stream"),
                  std::string::npos);
        const EventStream stream = parse_event_stream(streamed->body);
        EXPECT_TRUE(stream.done);
        ASSERT_FALSE(stream.events.empty());
        std::map<int, std::string> texts;
        for (std::size_t i = 0; i + 1 < stream.events.size(); ++i) {
            const Json& event = stream.events[i];
            const std::string piece = event["text"].get<std::string>();
            EXPECT_TRUE(valid_utf8(piece));
            texts[event["index"].get<int>()] += piece;
        }
        const Json& done = stream.events.back();
        EXPECT_EQ(done["done"], true);
        EXPECT_EQ(done["usage"], whole["usage"]);
        ASSERT_EQ(done["results"].size(), whole["results"].size());
        for (const Json& result : whole["results"]) {
            const int index = result["index"].get<int>();
            EXPECT_EQ(texts[index], result["text"].get<std::string>()) << request.dump();
            EXPECT_EQ(done["results"][index]["finish_reason"], result["finish_reason"]);
        }
    }
}

TEST(ServerE2ETest, OpenAICompletionsShapesStreamingAndPromptForms) {
    ServerProcess server;
    auto client = server.client();
    const Json request = {{"model", "gpt2-brown-mini"},
                          {"prompt", "The jury said"},
                          {"max_tokens", 10},
                          {"seed", 5},
                          {"temperature", 1.0}};
    const Json whole = body_json(post_json(*client, "/v1/completions", request));
    EXPECT_EQ(whole["object"], "text_completion");
    EXPECT_TRUE(whole["id"].get<std::string>().starts_with("cmpl-"));
    EXPECT_TRUE(whole["created"].is_number_integer());
    EXPECT_EQ(whole["model"], "gpt2-brown-mini");
    ASSERT_EQ(whole["choices"].size(), 1u);
    const Json& choice = whole["choices"][0];
    EXPECT_EQ(choice["index"], 0);
    EXPECT_TRUE(choice["logprobs"].is_null());
    EXPECT_TRUE(choice["finish_reason"] == "length" || choice["finish_reason"] == "stop");
    EXPECT_EQ(whole["usage"]["total_tokens"], whole["usage"]["prompt_tokens"].get<int>() +
                                                  whole["usage"]["completion_tokens"].get<int>());

    Json stream_request = request;
    stream_request["stream"] = true;
    stream_request["stream_options"] = {{"include_usage", true}};
    const auto streamed = post_json(*client, "/v1/completions", stream_request);
    ASSERT_TRUE(streamed);
    const EventStream stream = parse_event_stream(streamed->body);
    EXPECT_TRUE(stream.done);
    ASSERT_GE(stream.events.size(), 2u);
    std::string text;
    for (std::size_t i = 0; i + 1 < stream.events.size(); ++i) {
        const Json& chunk = stream.events[i];
        EXPECT_EQ(chunk["object"], "text_completion");
        EXPECT_EQ(chunk["id"], stream.events.front()["id"]);
        EXPECT_TRUE(chunk.contains("usage") && chunk["usage"].is_null());
        ASSERT_EQ(chunk["choices"].size(), 1u);
        text += chunk["choices"][0]["text"].get<std::string>();
    }
    EXPECT_EQ(text, choice["text"].get<std::string>());
    EXPECT_EQ(stream.events[stream.events.size() - 2]["choices"][0]["finish_reason"],
              choice["finish_reason"]);
    const Json& usage_chunk = stream.events.back();
    EXPECT_TRUE(usage_chunk["choices"].empty());
    EXPECT_EQ(usage_chunk["usage"], whole["usage"]);

    // Token-id prompts give the same completion as the text they encode; echo prepends it.
    const Json ids =
        body_json(post_json(*client, "/tokenize", {{"prompt", "The jury said"}}))["tokens"];
    Json by_ids = request;
    by_ids["prompt"] = ids;
    by_ids["echo"] = true;
    by_ids["logprobs"] = 2;
    const Json echoed = body_json(post_json(*client, "/v1/completions", by_ids));
    EXPECT_EQ(echoed["choices"][0]["text"], "The jury said" + choice["text"].get<std::string>());
    const Json& logprobs = echoed["choices"][0]["logprobs"];
    const std::size_t total = ids.size() + whole["usage"]["completion_tokens"].get<std::size_t>();
    EXPECT_EQ(logprobs["tokens"].size(), total);
    EXPECT_EQ(logprobs["token_logprobs"].size(), total);
    EXPECT_TRUE(logprobs["token_logprobs"][0].is_null());
    EXPECT_LE(logprobs["top_logprobs"].back().size(), 2u);

    // Batches: n choices per prompt, numbered prompt-major.
    const Json batch =
        body_json(post_json(*client, "/v1/completions",
                            {{"prompt", Json::array({ids, ids})}, {"n", 2}, {"max_tokens", 3}}));
    ASSERT_EQ(batch["choices"].size(), 4u);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(batch["choices"][i]["index"], i);
}

TEST(ServerE2ETest, TokenizeDetokenizeRoundTrip) {
    ServerProcess server;
    auto client = server.client();
    const std::string text = "Hello, world! Ünïcödé 语言 😀";
    const Json tokens = body_json(post_json(*client, "/tokenize", {{"prompt", text}}));
    EXPECT_EQ(tokens["count"], tokens["tokens"].size());
    EXPECT_EQ(tokens["max_model_len"], model_config()["n_positions"]);
    const Json back = body_json(post_json(*client, "/detokenize", {{"tokens", tokens["tokens"]}}));
    EXPECT_EQ(back["prompt"], text);
}

TEST(ServerE2ETest, EachErrorClassHasItsStatusAndJsonBody) {
    ServerProcess server(Environment{{"MAX_BODY_BYTES", "4096"}});
    auto client = server.client();
    const int n_positions = model_config()["n_positions"].get<int>();

    auto raw = client->Post("/generate", "{\"prompt\": ", "application/json");
    EXPECT_EQ(expect_error(raw, 400)["code"], "invalid_json");
    expect_error(post_json(*client, "/generate", {{"prompt", 5}}), 400, "prompt");
    expect_error(post_json(*client, "/generate", {{"prompt", "x"}, {"top_k", "many"}}), 400,
                 "top_k");
    expect_error(post_json(*client, "/generate", {{"prompt", "x"}, {"colour", 1}}), 400, "colour");
    const Json range =
        expect_error(post_json(*client, "/generate", {{"prompt", "x"}, {"temperature", -2}}), 422,
                     "temperature");
    EXPECT_NE(range["message"].get<std::string>().find("-2"), std::string::npos);
    // Issue 14: the OpenAI routes answer invalid values with 400, not 422.
    expect_error(post_json(*client, "/v1/completions", {{"prompt", "x"}, {"n", 99}}), 400, "n");

    // A prompt longer than the context: 400 (OpenAI's status for it) naming both numbers.
    const Json long_prompt = Json(std::vector<int>(n_positions + 10, 464));
    const Json too_long = expect_error(
        post_json(*client, "/v1/completions", {{"prompt", long_prompt}}), 400, "prompt");
    EXPECT_EQ(too_long["code"], "context_length_exceeded");
    EXPECT_NE(too_long["message"].get<std::string>().find(std::to_string(n_positions + 10)),
              std::string::npos);
    EXPECT_NE(too_long["message"].get<std::string>().find(std::to_string(n_positions)),
              std::string::npos);
    const Json no_room = expect_error(
        post_json(*client, "/v1/completions",
                  {{"prompt", Json(std::vector<int>(n_positions - 5, 464))}, {"max_tokens", 10}}),
        400, "max_tokens");
    EXPECT_NE(no_room["message"].get<std::string>().find(std::to_string(n_positions)),
              std::string::npos);

    expect_error(client->Post("/generate", std::string(5000, ' '), "application/json"), 413);
    const auto missing = client->Get("/no/such/route");
    EXPECT_EQ(expect_error(missing, 404)["code"], "not_found");
    const auto wrong_method = client->Get("/v1/completions");
    expect_error(wrong_method, 405);
    EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
    expect_error(client->Post("/health", "", "application/json"), 405);
    EXPECT_EQ(
        expect_error(post_json(*client, "/v1/completions", {{"prompt", "x"}, {"model", "gpt-9"}}),
                     404, "model")["code"],
        "model_not_found");

    // None of it disturbed the server.
    const auto after = post_json(*client, "/generate", {{"prompt", "x"}, {"max_length", 2}});
    ASSERT_TRUE(after);
    EXPECT_EQ(after->status, 200);
    const std::string metrics = metrics_text(server);
    EXPECT_GE(metric_value(metrics, "llmserve_rejected_requests_total{reason=\"validation\"}"), 9);
    EXPECT_EQ(
        metric_value(metrics, "llmserve_rejected_requests_total{reason=\"payload_too_large\"}"), 1);
}

TEST(ServerE2ETest, ApiKeysAreRequiredExceptOnOpenProbes) {
    ServerProcess server(
        Environment{{"API_KEYS", "key-one,key-two"}, {"AUTH_EXEMPT_PROBES", "true"}});
    auto client = server.client();
    const Json request = {{"prompt", "x"}, {"max_length", 2}};
    const auto missing = post_json(*client, "/generate", request);
    expect_error(missing, 401);
    EXPECT_EQ(missing->get_header_value("WWW-Authenticate"), "Bearer");
    expect_error(post_json(*client, "/generate", request, {{"Authorization", "Bearer key-three"}}),
                 401);
    expect_error(post_json(*client, "/generate", request, {{"Authorization", "Basic key-one"}}),
                 401);
    expect_error(client->Get("/info"), 401);
    for (const char* key : {"key-one", "key-two"}) {
        const auto ok = post_json(*client, "/generate", request,
                                  {{"Authorization", std::string("Bearer ") + key}});
        ASSERT_TRUE(ok);
        EXPECT_EQ(ok->status, 200) << key;
    }
    EXPECT_EQ(client->Get("/health")->status, 200);
    EXPECT_EQ(client->Get("/ready")->status, 200);
    EXPECT_EQ(client->Get("/metrics")->status, 200);
    EXPECT_EQ(
        metric_value(metrics_text(server), "llmserve_rejected_requests_total{reason=\"auth\"}"), 4);
}

TEST(ServerE2ETest, ProbesNeedTheKeyUnlessExempted) {
    ServerProcess server(Environment{{"API_KEYS", "key-one"}});
    auto client = server.client();
    expect_error(client->Get("/metrics"), 401);
    httplib::Headers auth = {{"Authorization", "Bearer key-one"}};
    EXPECT_EQ(client->Get("/metrics", auth)->status, 200);
}

TEST(ServerE2ETest, RateLimitPerKeyWithRetryAfter) {
    ServerProcess server(Environment{
        {"API_KEYS", "alpha,beta"}, {"RATE_LIMIT_RPM", "6"}, {"RATE_LIMIT_BURST", "2"}});
    auto client = server.client();
    const httplib::Headers alpha = {{"Authorization", "Bearer alpha"}};
    const httplib::Headers beta = {{"Authorization", "Bearer beta"}};
    const Json request = {{"prompt", "x"}};
    EXPECT_EQ(post_json(*client, "/tokenize", request, alpha)->status, 200);
    EXPECT_EQ(post_json(*client, "/tokenize", request, alpha)->status, 200);
    const auto limited = post_json(*client, "/tokenize", request, alpha);
    EXPECT_EQ(expect_error(limited, 429)["code"], "rate_limit_exceeded");
    const int retry_after = std::stoi(limited->get_header_value("Retry-After"));
    EXPECT_GE(retry_after, 1);
    EXPECT_LE(retry_after, 10);  // one request every 10 s
    EXPECT_EQ(post_json(*client, "/tokenize", request, beta)->status, 200);  // its own bucket
    EXPECT_EQ(client->Get("/health", alpha)->status, 200);  // probes are never limited
    EXPECT_EQ(client->Get("/health", alpha)->status, 200);
}

TEST(ServerE2ETest, FullQueueAnswers503AtOnceAndReadyReportsIt) {
    ServerProcess server(Environment{{"MAX_CONCURRENT_REQUESTS", "1"}, {"MAX_QUEUE", "1"}});
    // One long generation running, one waiting behind it: the queue is full.
    RawConnection running(server.port());
    running.send_post("/generate", long_generation().dump());
    ASSERT_GE(wait_for_metric(server, "llmserve_sequences_running", 1), 1);
    RawConnection waiting(server.port());
    waiting.send_post("/generate", long_generation().dump());
    ASSERT_GE(wait_for_metric(server, "llmserve_requests_waiting", 1), 1);

    const auto start = std::chrono::steady_clock::now();
    const auto refused = post_json(*server.client(), "/generate", {{"prompt", "x"}});
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);  // at once, not after waiting
    EXPECT_EQ(expect_error(refused, 503)["code"], "queue_full");
    EXPECT_FALSE(refused->get_header_value("Retry-After").empty());
    const auto ready = server.client()->Get("/ready");
    EXPECT_EQ(expect_error(ready, 503)["code"], "not_ready");
    EXPECT_NE(body_json(ready)["error"]["message"].get<std::string>().find("queue"),
              std::string::npos);
    EXPECT_EQ(metric_value(metrics_text(server),
                           "llmserve_rejected_requests_total{reason=\"queue_full\"}"),
              1);

    // Their clients leave; the slots free up and the server is ready again.
    running.close();
    waiting.close();
    EXPECT_EQ(wait_for_metric(server, "llmserve_client_disconnects_total", 2), 2);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (server.client()->Get("/ready")->status != 200 &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(server.client()->Get("/ready")->status, 200);
    EXPECT_EQ(
        post_json(*server.client(), "/generate", {{"prompt", "x"}, {"max_length", 2}})->status,
        200);
}

TEST(ServerE2ETest, TimeoutEndsGenerationWithWhatWasProduced) {
    ServerProcess server(Environment{{"REQUEST_TIMEOUT_S", "0.3"}});
    const auto start = std::chrono::steady_clock::now();
    const Json body = body_json(post_json(*server.client(), "/generate", long_generation()));
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);  // 0.3 s plus a loaded machine
    ASSERT_EQ(body["results"].size(), 1u) << body.dump();
    EXPECT_EQ(body["results"][0]["finish_reason"], "timeout");
    const int generated = body["results"][0]["generated_tokens"].get<int>();
    EXPECT_GT(generated, 0);
    EXPECT_LT(generated, long_generation()["max_length"].get<int>());
    EXPECT_EQ(body["usage"]["completion_tokens"], generated);
    EXPECT_FALSE(body["results"][0]["text"].get<std::string>().empty());
}

TEST(ServerE2ETest, ClientDisconnectCancelsAndFreesTheSlot) {
    ServerProcess server;
    for (const bool stream : {true, false}) {
        SCOPED_TRACE(stream ? "streaming" : "non-streaming");
        const double before =
            metric_value(metrics_text(server), "llmserve_client_disconnects_total");
        {
            RawConnection connection(server.port());
            connection.send_post("/generate", long_generation(stream).dump());
            if (stream) {
                EXPECT_NE(connection.read_until("data: ").find("data: "), std::string::npos);
            } else {
                ASSERT_GE(wait_for_metric(server, "llmserve_sequences_running", 1), 1);
            }
        }  // closed mid-generation
        EXPECT_EQ(wait_for_metric(server, "llmserve_client_disconnects_total", before + 1),
                  before + 1);
        const std::string metrics = metrics_text(server);
        EXPECT_EQ(metric_value(metrics, "llmserve_sequences_running"), 0);
        EXPECT_EQ(metric_value(metrics, "llmserve_generation_requests_in_flight"), 0);
        EXPECT_GE(metric_value(metrics, "llmserve_sequences_finished_total{reason=\"cancelled\"}"),
                  before + 1);
    }
    // Cancelled generations stopped early: far fewer tokens than two full generations.
    EXPECT_LT(metric_value(metrics_text(server), "llmserve_generation_tokens_total"),
              long_generation()["max_length"].get<int>());
}

TEST(ServerE2ETest, GracefulShutdownLetsInFlightRequestsFinish) {
    ServerProcess server(Environment{{"SHUTDOWN_GRACE_S", "30"}});
    constexpr int kTokens = 40;
    auto in_flight = std::async(std::launch::async, [&] {
        Json request = long_generation();
        request["max_length"] = kTokens;
        return body_json(post_json(*server.client(), "/generate", request));
    });
    ASSERT_GE(wait_for_metric(server, "llmserve_sequences_running", 1), 1);
    const int port = server.port();
    kill(server.pid(), SIGTERM);
    std::this_thread::sleep_for(50ms);
    httplib::Client late("127.0.0.1", port);
    EXPECT_FALSE(late.Get("/health"));  // no longer accepting
    const Json body = in_flight.get();
    EXPECT_EQ(server.stop(0, 60s), 0) << server.output();
    ASSERT_EQ(body["results"].size(), 1u) << body.dump();
    EXPECT_EQ(body["results"][0]["finish_reason"], "length");
    EXPECT_EQ(body["results"][0]["generated_tokens"], kTokens);
}

TEST(ServerE2ETest, ShutdownGracePeriodCancelsWhatIsLeft) {
    ServerProcess server(Environment{{"SHUTDOWN_GRACE_S", "0.2"}});
    auto in_flight = std::async(std::launch::async, [&] {
        return body_json(post_json(*server.client(), "/generate", long_generation()));
    });
    ASSERT_GE(wait_for_metric(server, "llmserve_sequences_running", 1), 1);
    EXPECT_EQ(server.stop(SIGINT, 30s), 0) << server.output();
    const Json body = in_flight.get();
    ASSERT_EQ(body["results"].size(), 1u) << body.dump();
    EXPECT_EQ(body["results"][0]["finish_reason"], "cancelled");
}

TEST(ServerE2ETest, MetricsCountRequestsAndTokens) {
    ServerProcess server;
    auto client = server.client();
    const std::string before = metrics_text(server);
    const Json body = body_json(
        post_json(*client, "/generate", {{"prompt", {"The jury said", "It"}}, {"max_length", 5}}));
    const std::string after = metrics_text(server);
    const auto delta = [&](const std::string& sample) {
        return metric_value(after, sample) - metric_value(before, sample);
    };
    EXPECT_EQ(
        delta("llmserve_http_requests_total{route=\"/generate\",method=\"POST\",code=\"200\"}"), 1);
    EXPECT_EQ(delta("llmserve_generation_tokens_total"), body["usage"]["completion_tokens"]);
    EXPECT_EQ(delta("llmserve_prompt_tokens_total"), body["usage"]["prompt_tokens"]);
    EXPECT_EQ(delta("llmserve_time_to_first_token_seconds_count"), 2);
    EXPECT_EQ(delta("llmserve_request_queue_seconds_count"), 2);
    EXPECT_EQ(delta("llmserve_request_batch_size_count"), 1);
    EXPECT_EQ(delta("llmserve_http_request_duration_seconds_count{route=\"/generate\"}"), 1);
    for (const char* family :
         {"llmserve_inter_token_latency_seconds", "process_resident_memory_bytes",
          "llmserve_system_memory_available_bytes", "llmserve_model_load_seconds",
          "llmserve_sequences_running", "llmserve_requests_waiting",
          "llmserve_engine_last_step_sequences"}) {
        EXPECT_NE(after.find(std::string("# TYPE ") + family), std::string::npos) << family;
    }
    EXPECT_GT(metric_value(after, "process_resident_memory_bytes"), 0);
    EXPECT_GT(metric_value(after, "llmserve_model_load_seconds"), 0);
}

TEST(ServerE2ETest, MetricsShowPrefixCacheHitsAndKvBlocks) {
    ServerProcess server;
    auto client = server.client();
    // A prompt of several full KV blocks, sent twice: the second request reuses the first's blocks.
    std::string prompt;
    for (int i = 0; i < 12; ++i) prompt += "The jury said that the city was well run. ";
    const Json request = {{"prompt", prompt}, {"max_length", 2}, {"temperature", 0}};
    const Json first = body_json(post_json(*client, "/generate", request));
    const std::string before = metrics_text(server);
    const Json second = body_json(post_json(*client, "/generate", request));
    const std::string after = metrics_text(server);
    EXPECT_EQ(first["results"][0]["text"], second["results"][0]["text"]);
    EXPECT_GT(metric_value(after, "llmserve_prefix_cache_hits_total"),
              metric_value(before, "llmserve_prefix_cache_hits_total"));
    EXPECT_GT(metric_value(after, "llmserve_prefix_cache_queries_total"), 0);
    EXPECT_GT(metric_value(after, "llmserve_kv_cache_blocks"), 0);
    // Nothing is running, so every block is free again (cached prefix blocks count as free).
    EXPECT_EQ(metric_value(after, "llmserve_kv_cache_blocks_free"),
              metric_value(after, "llmserve_kv_cache_blocks"));
}

TEST(ServerE2ETest, ConcurrentClientsAllSucceed) {
    ServerProcess server;
    std::vector<std::future<int>> statuses;
    for (int i = 0; i < 12; ++i) {
        statuses.push_back(std::async(std::launch::async, [&, i] {
            const Json request = {{"prompt", "Client " + std::to_string(i)},
                                  {"max_length", 8},
                                  {"stream", i % 2 == 0}};
            const auto result =
                post_json(*server.client(), i % 3 == 0 ? "/v1/completions" : "/generate",
                          i % 3 == 0 ? Json{{"prompt", "x"}, {"max_tokens", 8}} : request);
            return result ? result->status : -1;
        }));
    }
    for (auto& status : statuses) EXPECT_EQ(status.get(), 200);
}

TEST(ServerE2ETest, WeightFormatKvBudgetAndStepBudgetReachTheEngine) {
    // The smallest budget the engine accepts: one full context of f32 keys and values.
    const Json config = model_config();
    const double context_bytes = 2.0 * sizeof(float) * config["n_layer"].get<int>() *
                                 config["n_positions"].get<int>() * config["n_embd"].get<int>();
    const int minimum_mb = static_cast<int>(std::ceil(context_bytes / (1 << 20)));

    const auto [small_status, small_output] =
        run_llmserve({{"KV_CACHE_MB", std::to_string(minimum_mb - 1)}, {"PORT", "0"}}, {"serve"});
    EXPECT_EQ(small_status, 2);  // a usage error (src/cli/main.cpp)
    EXPECT_NE(small_output.find("KV_CACHE_MB=" + std::to_string(minimum_mb - 1)), std::string::npos)
        << small_output;
    EXPECT_NE(small_output.find("at least " + std::to_string(minimum_mb)), std::string::npos)
        << small_output;

    ServerProcess server(Environment{
        {"DTYPE", "q8"}, {"KV_CACHE_MB", std::to_string(minimum_mb)}, {"MAX_BATCH_TOKENS", "16"}});
    auto client = server.client();
    // A prompt longer than one step's budget is prefilled in several chunks.
    std::string prompt;
    for (int i = 0; i < 6; ++i) prompt += "The jury said that the city was well run. ";
    const auto result =
        post_json(*client, "/generate", {{"prompt", prompt}, {"max_length", 8}, {"seed", 3}});
    ASSERT_TRUE(result);
    ASSERT_EQ(result->status, 200) << result->body;
    const Json body = body_json(result);
    const int prompt_tokens = body["usage"]["prompt_tokens"].get<int>();
    const int generated = body["results"][0]["generated_tokens"].get<int>();
    EXPECT_GT(prompt_tokens, 16);
    EXPECT_GE(generated, 1);
    // 16 prompt tokens per step, then one step per further token (a 256-token budget would
    // prefill in one step).
    EXPECT_GE(metric_value(metrics_text(server), "llmserve_engine_steps_total"),
              (prompt_tokens + 15) / 16 + generated - 1);

    Json loaded;
    for (const Json& line : server.log_lines()) {
        if (line.value("msg", "") == "model loaded") loaded = line;
    }
    ASSERT_TRUE(loaded.is_object()) << server.output();
    EXPECT_EQ(loaded["dtype"], "q8");
    EXPECT_EQ(loaded["kv_cache_budget"], "KV_CACHE_MB");
    EXPECT_EQ(loaded["max_batch_tokens"], 16);
    EXPECT_LE(loaded["kv_cache_mib"].get<double>(), minimum_mb);
    // The budget holds one context, not the default of one per running sequence.
    const int kv_tokens = loaded["kv_cache_tokens"].get<int>();
    EXPECT_GE(kv_tokens, config["n_positions"].get<int>());
    EXPECT_LT(kv_tokens, 2 * config["n_positions"].get<int>());
    EXPECT_EQ(metric_value(metrics_text(server), "llmserve_kv_cache_blocks"),
              loaded["kv_cache_blocks"].get<double>());
}

// The same budget holds twice the tokens in an f16 cache, and the server generates from it.
TEST(ServerE2ETest, HalfPrecisionKvCacheHoldsTwiceTheTokens) {
    auto loaded_line = [](ServerProcess& server) {
        Json loaded;
        for (const Json& line : server.log_lines())
            if (line.value("msg", "") == "model loaded") loaded = line;
        return loaded;
    };
    int tokens[2] = {0, 0};
    int index = 0;
    for (const char* format : {"f32", "f16"}) {
        ServerProcess server(Environment{{"KV_CACHE_MB", "16"}, {"KV_CACHE_DTYPE", format}});
        auto client = server.client();
        const auto result = post_json(
            *client, "/generate", {{"prompt", "The jury said"}, {"max_length", 6}, {"seed", 1}});
        ASSERT_TRUE(result);
        ASSERT_EQ(result->status, 200) << result->body;
        EXPECT_GE(body_json(result)["results"][0]["generated_tokens"].get<int>(), 1);
        const Json loaded = loaded_line(server);
        ASSERT_TRUE(loaded.is_object()) << server.output();
        EXPECT_EQ(loaded["kv_cache_dtype"], format);
        tokens[index++] = loaded["kv_cache_tokens"].get<int>();
    }
    // Whole blocks of 16 tokens: halving the block's bytes fits at most one block more.
    EXPECT_GT(tokens[0], 0);
    EXPECT_GE(tokens[1], 2 * tokens[0]);
    EXPECT_LE(tokens[1], 2 * tokens[0] + 16);
}

TEST(ServerE2ETest, BadConfigurationStopsStartupNamingTheVariable) {
    const auto [status, output] = run_llmserve({{"PORT", "eighty"}}, {"serve"});
    EXPECT_EQ(status, 2);  // a usage error (src/cli/main.cpp)
    EXPECT_NE(output.find("PORT"), std::string::npos) << output;
    EXPECT_NE(output.find("eighty"), std::string::npos) << output;
    EXPECT_NE(output.find("[0, 65535]"), std::string::npos) << output;

    const auto [flag_status, flag_output] = run_llmserve({}, {"serve", "--top-p", "7"});
    EXPECT_EQ(flag_status, 2);
    EXPECT_NE(flag_output.find("--top-p"), std::string::npos) << flag_output;

    const auto [model_status, model_output] =
        run_llmserve({{"MODEL_NAME", "/nonexistent/model"}}, {"serve"});
    EXPECT_EQ(model_status, 1);
    EXPECT_NE(model_output.find("/nonexistent/model"), std::string::npos) << model_output;

    const auto [print_status, printed] =
        run_llmserve({{"MAX_QUEUE", "9"}}, {"serve", "--print-config", "--port", "1234"});
    EXPECT_EQ(print_status, 0) << printed;
    EXPECT_NE(printed.find("MAX_QUEUE=9"), std::string::npos) << printed;
    EXPECT_NE(printed.find("PORT=1234"), std::string::npos) << printed;
    EXPECT_NE(printed.find("(flag)"), std::string::npos) << printed;
    EXPECT_NE(printed.find("(environment)"), std::string::npos) << printed;
}

}  // namespace
}  // namespace llmserve::server::testing
