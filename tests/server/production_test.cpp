// End-to-end tests of issue 17's production conventions against the real binary: Prometheus
// naming, CORS, the JSON content type, statuses that say what happened, the response size limit,
// and their documentation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "server_process.h"

namespace llmserve::server::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::chrono_literals;

std::string metrics_text(const ServerProcess& server) {
    const auto result = server.client()->Get("/metrics");
    return result && result->status == 200 ? result->body : "";
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// Every "# TYPE name type" of a Prometheus text.
std::map<std::string, std::string> metric_families(const std::string& metrics) {
    std::map<std::string, std::string> families;
    std::istringstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.starts_with("# TYPE ")) continue;
        std::istringstream fields(line.substr(7));
        std::string name, type;
        fields >> name >> type;
        families[name] = type;
    }
    return families;
}

// The first sample line of `name` (with any labels), or "".
std::string sample_line(const std::string& metrics, const std::string& name) {
    std::istringstream in(metrics);
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with(name + "{") || line.starts_with(name + " ")) return line;
    }
    return "";
}

// --- 1. Prometheus conventions -------------------------------------------------------------------

TEST(Production, MetricsFollowPrometheusConventionsAndAreAllDocumented) {
    ServerProcess server;
    auto client = server.client();
    const std::string before = metrics_text(server);
    const auto generated = post_json(
        *client, "/generate",
        {{"prompt", "The jury said"}, {"max_length", 6}, {"ignore_eos", true}, {"temperature", 0}});
    ASSERT_EQ(generated->status, 200) << generated->body;
    ASSERT_EQ(client->Get("/no/such/route")->status, 404);
    const std::string after = metrics_text(server);

    const auto families = metric_families(after);
    for (const auto& [name, type] : families) {
        // `_total` marks a counter and only a counter.
        EXPECT_EQ(name.ends_with("_total"), type == "counter") << name << " is a " << type;
    }
    // The status label is `code`, as in every Prometheus HTTP exporter.
    EXPECT_EQ(metric_value(
                  after,
                  "llmserve_http_requests_total{route=\"/generate\",method=\"POST\",code=\"200\"}"),
              1);
    EXPECT_EQ(metric_value(after,
                           "llmserve_http_requests_total{route=\"unmatched\",method=\"GET\","
                           "code=\"404\"}"),
              1);
    // An unknown path is not a rejected (invalid) API request.
    EXPECT_EQ(metric_value(after, "llmserve_rejected_requests_total{reason=\"validation\"}"), 0);
    // One inter-token observation per gap: 6 tokens, 5 gaps.
    EXPECT_EQ(metric_value(after, "llmserve_inter_token_latency_seconds_count") -
                  metric_value(before, "llmserve_inter_token_latency_seconds_count"),
              5);
    EXPECT_GT(metric_value(after, "llmserve_kv_cache_blocks"), 0);
    EXPECT_EQ(families.count("llmserve_sequences_running"), 1u);

    // The standard process metrics, read from /proc/self.
    EXPECT_EQ(families.at("process_cpu_seconds_total"), "counter");
    EXPECT_GT(metric_value(after, "process_resident_memory_bytes"), 0);
    EXPECT_GT(metric_value(after, "process_open_fds"), 3);
    const double started = metric_value(after, "process_start_time_seconds");
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    EXPECT_GT(started, now - 600);
    EXPECT_LE(started, now + 2);
    const std::string build_info = sample_line(after, "llmserve_build_info");
    EXPECT_TRUE(std::regex_match(
        build_info,
        std::regex(R"(llmserve_build_info\{version="[^"]+",device="[^"]+",model="[^"]+"\} 1)")))
        << build_info;

    // Every series /metrics can show is in docs/API.md's metrics table.
    std::istringstream api_doc(read_text(fs::path(LLMSERVE_SOURCE_DIR) / "docs" / "API.md"));
    std::string table;
    bool in_metrics = false;
    for (std::string line; std::getline(api_doc, line);) {
        if (line.starts_with("## ")) in_metrics = line == "## Metrics";
        if (in_metrics && line.starts_with("| `")) table += line + "\n";
    }
    for (const auto& [name, type] : families) {
        EXPECT_NE(table.find("`" + name), std::string::npos) << name << " is not documented";
    }
}

// --- 2. CORS -----------------------------------------------------------------------------------

constexpr const char* kAllowedOrigin = "https://app.example.com";

TEST(Production, CorsPreflightAndHeadersOnEveryAnswerForAllowedOrigins) {
    ServerProcess server(
        Environment{{"CORS_ALLOW_ORIGINS", "http://localhost:3000, " + std::string(kAllowedOrigin)},
                    {"API_KEYS", "key-one"},
                    {"RATE_LIMIT_RPM", "60"},
                    {"RATE_LIMIT_BURST", "6"}});
    auto client = server.client();
    const httplib::Headers from_app = {{"Origin", kAllowedOrigin}};
    const httplib::Headers from_app_with_key = {{"Origin", kAllowedOrigin},
                                                {"Authorization", "Bearer key-one"}};

    for (const char* route :
         {"/generate", "/v1/completions", "/v1/chat/completions", "/tokenize"}) {
        SCOPED_TRACE(route);
        const auto preflight = client->Options(
            route, {{"Origin", kAllowedOrigin},
                    {"Access-Control-Request-Method", "POST"},
                    {"Access-Control-Request-Headers", "authorization,content-type"}});
        ASSERT_TRUE(preflight);
        EXPECT_EQ(preflight->status, 204);
        EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Origin"), kAllowedOrigin);
        EXPECT_NE(preflight->get_header_value("Access-Control-Allow-Methods").find("POST"),
                  std::string::npos);
        const std::string allowed_headers =
            preflight->get_header_value("Access-Control-Allow-Headers");
        EXPECT_NE(allowed_headers.find("Authorization"), std::string::npos);
        EXPECT_NE(allowed_headers.find("Content-Type"), std::string::npos);
        EXPECT_FALSE(preflight->get_header_value("Access-Control-Max-Age").empty());
        EXPECT_EQ(preflight->get_header_value("Vary"), "Origin");
    }

    // Errors carry the header too, so that the page can read why it was refused.
    const Json request = {{"prompt", "x"}, {"max_length", 2}};
    const auto unauthorized = post_json(*client, "/generate", request, from_app);
    EXPECT_EQ(unauthorized->status, 401);
    EXPECT_EQ(unauthorized->get_header_value("Access-Control-Allow-Origin"), kAllowedOrigin);
    const auto missing = client->Get("/no/such/route", from_app_with_key);
    EXPECT_EQ(missing->status, 404);
    EXPECT_EQ(missing->get_header_value("Access-Control-Allow-Origin"), kAllowedOrigin);
    Json streamed = request;
    streamed["stream"] = true;
    const auto stream = post_json(*client, "/generate", streamed, from_app_with_key);
    EXPECT_EQ(stream->status, 200);
    EXPECT_EQ(stream->get_header_value("Access-Control-Allow-Origin"), kAllowedOrigin);
    EXPECT_TRUE(parse_event_stream(stream->body).done);
    // The key's bucket holds 6 requests: one of the next 10 is refused.
    std::string limited_origin = "(never limited)";
    for (int i = 0; i < 10; ++i) {
        const auto answer = post_json(*client, "/tokenize", {{"prompt", "x"}}, from_app_with_key);
        if (answer->status == 429) {
            limited_origin = answer->get_header_value("Access-Control-Allow-Origin");
            break;
        }
    }
    EXPECT_EQ(limited_origin, kAllowedOrigin);

    // Another site gets no CORS header: its browser keeps the answer from the page.
    const httplib::Headers from_elsewhere = {{"Origin", "https://evil.example.net"}};
    const auto refused_preflight = client->Options("/generate", from_elsewhere);
    EXPECT_FALSE(refused_preflight->has_header("Access-Control-Allow-Origin"));
    EXPECT_FALSE(refused_preflight->has_header("Access-Control-Allow-Methods"));
    EXPECT_FALSE(client->Get("/health", from_elsewhere)->has_header("Access-Control-Allow-Origin"));
}

TEST(Production, NoCorsHeadersUnlessConfiguredAndBadOriginsRefusedAtStart) {
    {
        ServerProcess server;
        const auto answer = server.client()->Get("/health", {{"Origin", kAllowedOrigin}});
        EXPECT_FALSE(answer->has_header("Access-Control-Allow-Origin"));
        EXPECT_FALSE(answer->has_header("Vary"));
    }
    {
        ServerProcess server(Environment{{"CORS_ALLOW_ORIGINS", "*"}});
        const auto answer = server.client()->Get("/health", {{"Origin", kAllowedOrigin}});
        EXPECT_EQ(answer->get_header_value("Access-Control-Allow-Origin"), "*");
    }
    for (const char* bad : {"app.example.com", "https://app.example.com/path", "*,https://a.b"}) {
        const auto [status, output] =
            run_llmserve({{"CORS_ALLOW_ORIGINS", bad}, {"PORT", "0"}}, {"serve", "--print-config"});
        EXPECT_EQ(status, 2) << bad << ": " << output;
        EXPECT_NE(output.find("CORS_ALLOW_ORIGINS"), std::string::npos) << output;
    }
}

// --- 3. JSON bodies need their content type --------------------------------------------------

TEST(Production, PostBodiesMustBeSentAsJson) {
    ServerProcess server;
    auto client = server.client();
    const std::string body = Json{{"prompt", "x"}, {"max_length", 2}}.dump();
    for (const char* route :
         {"/generate", "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"}) {
        SCOPED_TRACE(route);
        // What a cross-site HTML form can send.
        const auto form = client->Post(route, body, "text/plain");
        ASSERT_TRUE(form);
        EXPECT_EQ(form->status, 415);
        const Json error = Json::parse(form->body)["error"];
        EXPECT_EQ(error["code"], "unsupported_media_type");
        const std::string message = error["message"].get<std::string>();
        EXPECT_NE(message.find("text/plain"), std::string::npos) << message;
        EXPECT_NE(message.find("application/json"), std::string::npos) << message;
        EXPECT_EQ(client->Post(route, body, "application/x-www-form-urlencoded")->status, 415);
        EXPECT_EQ(client->Post(route, httplib::Headers{}, body, "")->status, 415);
    }
    // Parameters and any case are fine.
    const auto with_charset = client->Post("/generate", body, "Application/JSON; charset=utf-8");
    EXPECT_EQ(with_charset->status, 200) << with_charset->body;
}

// --- 4. Statuses that say what happened ----------------------------------------------------------

TEST(Production, BatchThatCanNeverBeQueuedIs422NamingMaxQueue) {
    ServerProcess server(Environment{{"MAX_QUEUE", "2"}});
    auto client = server.client();
    const Json prompts = {"a", "b", "c"};
    const auto native = post_json(*client, "/generate", {{"prompt", prompts}, {"max_length", 2}});
    EXPECT_EQ(native->status, 422) << native->body;
    EXPECT_FALSE(native->has_header("Retry-After"));
    EXPECT_NE(native->body.find("MAX_QUEUE=2"), std::string::npos) << native->body;
    const auto openai =
        post_json(*client, "/v1/completions", {{"prompt", prompts}, {"max_tokens", 2}});
    EXPECT_EQ(openai->status, 400) << openai->body;
    EXPECT_NE(openai->body.find("MAX_QUEUE=2"), std::string::npos) << openai->body;
    // As many prompts as the queue holds are fine.
    EXPECT_EQ(post_json(*client, "/generate", {{"prompt", {"a", "b"}}, {"max_length", 2}})->status,
              200);

    const auto [status, output] =
        run_llmserve({{"MAX_QUEUE", "0"}, {"PORT", "0"}}, {"serve", "--print-config"});
    EXPECT_EQ(status, 2) << output;
    EXPECT_NE(output.find("MAX_QUEUE='0' is invalid"), std::string::npos) << output;
}

TEST(Production, SeedsAreExactlyTheIntegersOfTheirRange) {
    ServerProcess server;
    auto client = server.client();
    const auto generate = [&](const std::string& seed) {
        return client->Post("/generate",
                            R"({"prompt": "x", "max_length": 2, "seed": )" + seed + "}",
                            "application/json");
    };
    const auto largest = generate("18446744073709551615");
    ASSERT_EQ(largest->status, 200) << largest->body;
    EXPECT_EQ(Json::parse(largest->body)["results"][0]["seed"].get<std::uint64_t>(),
              18446744073709551615ull);
    const auto exponent = generate("1e3");
    ASSERT_EQ(exponent->status, 200) << exponent->body;
    EXPECT_EQ(Json::parse(exponent->body)["results"][0]["seed"], 1000);
    for (const char* seed : {"-1", "18446744073709551616", "1.5", "\"7\""}) {
        SCOPED_TRACE(seed);
        const auto refused = generate(seed);
        EXPECT_TRUE(refused->status == 400 || refused->status == 422) << refused->body;
        const Json error = Json::parse(refused->body)["error"];
        EXPECT_EQ(error["param"], "seed");
        EXPECT_NE(error["message"].get<std::string>().find("[0, 18446744073709551615]"),
                  std::string::npos)
            << error.dump();
    }
    // A number with an exponent above 2^53 is no longer exact: refused, not rounded.
    const auto inexact = generate("1e17");
    EXPECT_EQ(inexact->status, 422) << inexact->body;
}

TEST(Production, RefusedKeysCountAgainstTheRateLimit) {
    ServerProcess server(
        Environment{{"API_KEYS", "key-one"}, {"RATE_LIMIT_RPM", "6"}, {"RATE_LIMIT_BURST", "2"}});
    auto client = server.client();
    const httplib::Headers guess = {{"Authorization", "Bearer guess"}};
    EXPECT_EQ(post_json(*client, "/tokenize", {{"prompt", "x"}}, guess)->status, 401);
    EXPECT_EQ(post_json(*client, "/tokenize", {{"prompt", "x"}}, guess)->status, 401);
    const auto limited = post_json(*client, "/tokenize", {{"prompt", "x"}}, guess);
    EXPECT_EQ(limited->status, 429) << limited->body;
    EXPECT_FALSE(limited->get_header_value("Retry-After").empty());
    // A valid key has its own bucket.
    EXPECT_EQ(
        post_json(*client, "/tokenize", {{"prompt", "x"}}, {{"Authorization", "Bearer key-one"}})
            ->status,
        200);
}

TEST(Production, WebDirServesOnlyRegularFilesBelowIt) {
    const fs::path root =
        fs::temp_directory_path() / ("llmserve-webdir-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "web" / "inner");
    std::ofstream(root / "web" / "index.html") << "<html>page</html>";
    std::ofstream(root / "web" / "inner" / "page.js") << "// script";
    std::ofstream(root / "secret.txt") << "classified contents";
    fs::create_symlink(root / "secret.txt", root / "web" / "leak.txt");
    fs::create_directory_symlink(root, root / "web" / "up");
    fs::create_symlink(root / "web" / "inner" / "page.js", root / "web" / "alias.js");
    {
        ServerProcess server(Environment{{"WEB_DIR", (root / "web").string()}});
        auto client = server.client();
        EXPECT_EQ(client->Get("/")->status, 200);
        EXPECT_EQ(client->Get("/inner/page.js")->status, 200);
        EXPECT_EQ(client->Get("/alias.js")->status, 200);  // a symlink that stays inside
        for (const char* path : {"/leak.txt", "/up/secret.txt", "/../secret.txt", "/inner"}) {
            const auto refused = client->Get(path);
            EXPECT_EQ(refused->status, 404) << path;
            EXPECT_EQ(refused->body.find("classified"), std::string::npos) << path;
        }
    }
    const auto [status, output] =
        run_llmserve({{"WEB_DIR", (root / "web").string()}}, {"serve", "--print-config"});
    EXPECT_EQ(status, 0) << output;
    EXPECT_NE(output.find("WEB_DIR=" + (root / "web").string()), std::string::npos) << output;
    fs::remove_all(root);
}

// Two prompts, one running slot: the second waits in the queue until the deadline they share.
Json queued_past_deadline(bool stream) {
    return {{"prompt", {"The jury said", "It"}},
            {"max_length", 400},
            {"ignore_eos", true},
            {"stream", stream}};
}

TEST(Production, WaitingPastTheDeadlineIsATimeoutErrorNotAnEmpty200) {
    ServerProcess server(
        Environment{{"REQUEST_TIMEOUT_S", "0.5"}, {"MAX_CONCURRENT_REQUESTS", "1"}});
    auto client = server.client();
    const auto answer = post_json(*client, "/generate", queued_past_deadline(false));
    EXPECT_EQ(answer->status, 504) << answer->body;
    const Json error = Json::parse(answer->body)["error"];
    EXPECT_EQ(error["code"], "timeout");
    EXPECT_NE(error["message"].get<std::string>().find("REQUEST_TIMEOUT_S=0.5"), std::string::npos);

    const auto streamed = post_json(*client, "/generate", queued_past_deadline(true));
    ASSERT_EQ(streamed->status, 200);
    const EventStream stream = parse_event_stream(streamed->body);
    ASSERT_FALSE(stream.events.empty()) << streamed->body;
    EXPECT_EQ(stream.events.back()["error"]["code"], "timeout") << streamed->body;
}

// --- 5. Memory: a response too large to hold is refused before generation ----------------------

// 4 prompts x n=2 x 200 tokens with 20 logprobs each: about 3.4 MB at the estimate's sizes.
Json large_logprobs_request(bool stream) {
    return {{"prompt", {"a", "b", "c", "d"}},
            {"n", 2},
            {"max_tokens", 200},
            {"logprobs", 20},
            {"ignore_eos", true},
            {"stream", stream}};
}

TEST(Production, ResponseLargerThanMaxResponseBytesIsRefusedNamingIt) {
    ServerProcess server(Environment{{"MAX_RESPONSE_BYTES", "1000000"}});
    auto client = server.client();
    const auto refused = post_json(*client, "/v1/completions", large_logprobs_request(false));
    EXPECT_EQ(refused->status, 400) << refused->body;
    const Json error = Json::parse(refused->body)["error"];
    EXPECT_EQ(error["param"], "max_tokens");
    const std::string message = error["message"].get<std::string>();
    EXPECT_NE(message.find("MAX_RESPONSE_BYTES=1000000"), std::string::npos) << message;
    EXPECT_NE(message.find("4 prompts x n=2 x up to 200 tokens with 20 logprobs"),
              std::string::npos)
        << message;
    // Refused before generation: nothing was generated.
    const std::string generated =
        sample_line(metrics_text(server), "llmserve_generation_tokens_total");
    EXPECT_TRUE(generated.empty() || generated.ends_with(" 0")) << generated;

    const auto native =
        post_json(*client, "/generate",
                  {{"prompt", {"a", "b", "c", "d"}}, {"max_length", 200}, {"logprobs", 20}});
    EXPECT_EQ(native->status, 422) << native->body;
    EXPECT_NE(native->body.find("MAX_RESPONSE_BYTES=1000000"), std::string::npos) << native->body;

    // A stream is written as it is generated, so the limit does not apply to it.
    const auto streamed = post_json(*client, "/v1/completions", large_logprobs_request(true));
    EXPECT_EQ(streamed->status, 200);
    EXPECT_EQ(streamed->body.find("MAX_RESPONSE_BYTES"), std::string::npos);
    // Nor to small requests.
    EXPECT_EQ(post_json(*client, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}})->status,
              200);

    const auto [status, output] =
        run_llmserve({{"MAX_RESPONSE_BYTES", "100"}, {"PORT", "0"}}, {"serve", "--print-config"});
    EXPECT_EQ(status, 2) << output;
    EXPECT_NE(output.find("MAX_RESPONSE_BYTES='100' is invalid"), std::string::npos) << output;
}

}  // namespace
}  // namespace llmserve::server::testing
