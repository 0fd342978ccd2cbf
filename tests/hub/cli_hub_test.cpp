// The real `llmserve` binary resolving a Hub name against the Hub stand-in: `download`, then
// `generate` from the cache, then the same offline. Shows that `--model org/name` (and MODEL_NAME,
// which takes the same path) works end to end without the real Hub.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/scratch_dir.h"
#include "tests/common/test_paths.h"
#include "tests/common/tiny_tokenizer.h"
#include "tests/hub/hub_stand_in.h"

namespace llmserve::hub::testing {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
    int status;
    std::string output;  // stdout and stderr
};

CommandResult run(const std::string& command) {
    CommandResult result{-1, {}};
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr) return result;
    std::array<char, 4096> buffer{};
    while (std::fgets(buffer.data(), buffer.size(), pipe) != nullptr)
        result.output += buffer.data();
    result.status = ::pclose(pipe);
    return result;
}

TEST(CliHub, DownloadThenGenerateFromTheCacheThenOffline) {
    HubStandIn hub;
    hub.add_repo("llmserve-test/gpt2-brown-mini", llmserve::testing::embedded_model_dir());
    const fs::path cache =
        fs::temp_directory_path() / ("llmserve-cli-hub-" + std::to_string(::getpid()));
    fs::remove_all(cache);
    const std::string env =
        "HF_ENDPOINT=" + hub.endpoint() + " HF_HUB_CACHE=" + cache.string() + " HF_TOKEN= ";
    const std::string binary = LLMSERVE_BINARY;

    const auto downloaded = run(env + binary + " download llmserve-test/gpt2-brown-mini");
    ASSERT_EQ(downloaded.status, 0) << downloaded.output;
    EXPECT_TRUE(fs::exists(cache / "models--llmserve-test--gpt2-brown-mini" / "refs" / "main"))
        << downloaded.output;

    hub.clear_requests();
    const std::string generate =
        " generate --model llmserve-test/gpt2-brown-mini --temperature 0 --max-new-tokens 5 "
        "--device cpu 'The jury said'";
    const auto cached = run(env + binary + generate);
    ASSERT_EQ(cached.status, 0) << cached.output;
    EXPECT_NE(cached.output.find("5 tokens, finish reason: length"), std::string::npos)
        << cached.output;
    EXPECT_TRUE(hub.requests().empty()) << "a cached model must not touch the network";

    const auto offline = run("HF_HUB_OFFLINE=1 " + env + binary + generate);
    ASSERT_EQ(offline.status, 0) << offline.output;
    EXPECT_EQ(offline.output.substr(0, 20), cached.output.substr(0, 20));

    const auto missing =
        run("HF_HUB_OFFLINE=1 " + env + binary + " generate --model llmserve-test/absent x");
    EXPECT_NE(missing.status, 0);
    EXPECT_NE(missing.output.find("llmserve-test/absent"), std::string::npos) << missing.output;
    fs::remove_all(cache);
}

// SIGTERM while the model is still downloading (the download stalled) ends the server at once;
// before, it waited for three 60 s stall timeouts.
TEST(CliHub, SigtermDuringAStalledDownloadExitsPromptly) {
    using Clock = std::chrono::steady_clock;
    HubStandIn hub;
    hub.add_repo("llmserve-test/stalled", llmserve::testing::embedded_model_dir());
    hub.stall("model.safetensors");
    const fs::path cache =
        fs::temp_directory_path() / ("llmserve-cli-stall-" + std::to_string(::getpid()));
    fs::remove_all(cache);
    const std::vector<std::string> environment = {"HF_ENDPOINT=" + hub.endpoint(),
                                                  "HF_HUB_CACHE=" + cache.string(),
                                                  "MODEL_NAME=llmserve-test/stalled",
                                                  "HOST=127.0.0.1",
                                                  "PORT=0",
                                                  "THREADS=1",
                                                  "PATH=/usr/bin:/bin"};
    std::vector<char*> envp;  // built before fork: the child only calls async-signal-safe code
    for (const std::string& entry : environment) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        const int null_fd = ::open("/dev/null", O_WRONLY);
        ::dup2(null_fd, STDOUT_FILENO);
        ::dup2(null_fd, STDERR_FILENO);
        char* argv[] = {const_cast<char*>(LLMSERVE_BINARY), const_cast<char*>("serve"), nullptr};
        ::execve(LLMSERVE_BINARY, argv, envp.data());
        ::_exit(127);
    }
    const auto stalled = [&] {
        for (const auto& request : hub.requests())
            if (request.method == "GET" && request.path.starts_with("/cdn/")) return true;
        return false;
    };
    const auto wait_start = Clock::now();
    while (!stalled() && Clock::now() - wait_start < std::chrono::seconds(30))
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(stalled()) << "the server never asked for the weights";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ::kill(pid, SIGTERM);
    const auto start = Clock::now();
    int status = 0;
    bool exited = false;
    while (Clock::now() - start < std::chrono::seconds(5)) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    }
    EXPECT_TRUE(exited) << "llmserve did not exit within 5 s of SIGTERM during a stalled download";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fs::remove_all(cache);
}

// A Hub name of the Qwen2.5 kind resolving to a Llama-family fixture (the first sharded one under
// models-llama, given a tokenizer): downloaded into the HF cache layout, then run.
TEST(CliHub, LlamaFamilyModelByHubName) {
    fs::path sharded;
    for (const fs::path& dir :
         llmserve::testing::subdirectories(llmserve::testing::fixtures_dir() / "models-llama"))
        if (sharded.empty() && fs::exists(dir / "model.safetensors.index.json")) sharded = dir;
    if (sharded.empty()) GTEST_SKIP() << "no sharded folder under models-llama";
    llmserve::testing::ScratchDir scratch;
    const fs::path repo = scratch.path() / "repo";
    llmserve::testing::copy_with_tiny_tokenizer(sharded, repo);
    HubStandIn hub;
    hub.add_repo("Qwen/Qwen2.5-0.5B-Instruct", repo);
    const std::string env = "HF_ENDPOINT=" + hub.endpoint() +
                            " HF_HUB_CACHE=" + (scratch.path() / "cache").string() + " HF_TOKEN= ";
    const auto generated =
        run(env + LLMSERVE_BINARY +
            " generate --model Qwen/Qwen2.5-0.5B-Instruct --temperature 0 --max-new-tokens 5 "
            "--ignore-eos --device cpu 'hello world'");
    ASSERT_EQ(generated.status, 0) << generated.output;
    EXPECT_NE(generated.output.find("5 tokens, finish reason: length"), std::string::npos)
        << generated.output;
    EXPECT_TRUE(fs::exists(scratch.path() / "cache" / "models--Qwen--Qwen2.5-0.5B-Instruct" /
                           "refs" / "main"));
}

// A GGUF repository named with a quantization tag: the two first GGUF fixtures published as
// "model-Q8_0.gguf" and "model-F32.gguf" (the names, not their contents, carry the tag). Only the
// selected file is fetched, it runs, it is found again offline, and an absent tag names the files.
TEST(CliHub, GgufFileByQuantizationTag) {
    std::vector<fs::path> gguf_files;
    for (const fs::path& dir :
         llmserve::testing::subdirectories(llmserve::testing::fixtures_dir() / "gguf"))
        if (fs::exists(dir / "model.gguf")) gguf_files.push_back(dir / "model.gguf");
    if (gguf_files.size() < 2) GTEST_SKIP() << "fewer than two GGUF fixtures";
    llmserve::testing::ScratchDir scratch;
    const fs::path repo = scratch.path() / "repo";
    fs::create_directories(repo);
    fs::copy_file(gguf_files[0], repo / "model-Q8_0.gguf");
    fs::copy_file(gguf_files[1], repo / "model-F32.gguf");
    HubStandIn hub;
    hub.add_repo("llmserve-test/tiny-GGUF", repo);
    const std::string env = "HF_ENDPOINT=" + hub.endpoint() +
                            " HF_HUB_CACHE=" + (scratch.path() / "cache").string() + " HF_TOKEN= ";
    const std::string generate =
        " generate --model llmserve-test/tiny-GGUF:q8_0 --temperature 0 --max-new-tokens 3 "
        "--ignore-eos --device cpu 'hello world'";

    const auto generated = run(env + LLMSERVE_BINARY + generate);
    ASSERT_EQ(generated.status, 0) << generated.output;
    EXPECT_NE(generated.output.find("3 tokens, finish reason: length"), std::string::npos)
        << generated.output;
    for (const auto& request : hub.requests())
        EXPECT_EQ(request.path.find("model-F32.gguf"), std::string::npos)
            << "fetched a file the tag does not select: " << request.path;

    hub.clear_requests();
    const auto offline = run("HF_HUB_OFFLINE=1 " + env + LLMSERVE_BINARY + generate);
    ASSERT_EQ(offline.status, 0) << offline.output;
    // The same greedy continuation, without the download line.
    EXPECT_NE(generated.output.find(offline.output.substr(0, 40)), std::string::npos)
        << offline.output;
    EXPECT_TRUE(hub.requests().empty()) << "a cached GGUF file must not touch the network";

    const auto absent =
        run(env + LLMSERVE_BINARY + " generate --model llmserve-test/tiny-GGUF:Q5_K_M x");
    EXPECT_NE(absent.status, 0);
    EXPECT_NE(absent.output.find("Q5_K_M"), std::string::npos) << absent.output;
    EXPECT_NE(absent.output.find("model-Q8_0.gguf"), std::string::npos) << absent.output;
}

}  // namespace
}  // namespace llmserve::hub::testing
