// Model names, the Hugging Face cache and downloads, against an in-process Hub stand-in that
// serves the fixture model folders (discovered under models/ and models-bin/).
#include "hub/hub.h"
#include "common/error.h"
#include "hub/progress.h"
#include "hub_stand_in.h"
#include "tests/common/expect_error.h"
#include "tests/common/scratch_dir.h"
#include "tests/common/test_paths.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace llmserve::hub {
namespace {

namespace fs = std::filesystem;
using llmserve::testing::expect_error;
using llmserve::testing::fixtures_dir;
using llmserve::testing::read_text;
using llmserve::testing::ScratchDir;
using llmserve::testing::subdirectories;
using testing::HubStandIn;

// Every fixture model folder: models/* (safetensors), then models-bin/* (pytorch_model.bin).
std::vector<fs::path> fixture_models() {
    std::vector<fs::path> dirs = subdirectories(fixtures_dir() / "models");
    for (const fs::path& dir : subdirectories(fixtures_dir() / "models-bin")) dirs.push_back(dir);
    return dirs;
}

// The files of `dir` a download must bring, by the downloader's documented rules, read from
// the folder itself: config.json, the optional files present, and one weight layout.
std::set<std::string> files_a_download_needs(const fs::path& dir) {
    std::set<std::string> files{"config.json"};
    for (const char* optional : {"generation_config.json", "tokenizer.json", "vocab.json",
                                 "merges.txt", "tokenizer_config.json"}) {
        if (fs::exists(dir / optional)) files.insert(optional);
    }
    const auto add_index = [&](const char* index) {
        files.insert(index);
        const std::string text = read_text(dir / index);
        // Shard names: every ".safetensors"/".bin" string value in the index's weight_map.
        for (const auto& entry : fs::directory_iterator(dir)) {
            const std::string name = entry.path().filename().string();
            if (text.find("\"" + name + "\"") != std::string::npos) files.insert(name);
        }
    };
    if (fs::exists(dir / "model.safetensors")) {
        files.insert("model.safetensors");
    } else if (fs::exists(dir / "model.safetensors.index.json")) {
        add_index("model.safetensors.index.json");
    } else if (fs::exists(dir / "pytorch_model.bin")) {
        files.insert("pytorch_model.bin");
    } else {
        add_index("pytorch_model.bin.index.json");
    }
    return files;
}

bool is_lfs(const std::string& file) {
    return file.ends_with(".safetensors") || file.ends_with(".bin");
}

std::string repo_name(const fs::path& dir) {
    return "test-org/" + dir.filename().string();
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Records the downloader's progress reports and checks their order.
class RecordingProgress final : public ProgressSink {
  public:
    struct File {
        std::string name;
        std::uint64_t total = 0;
        std::uint64_t resumed = 0;
        std::uint64_t last = 0;
        bool finished = false;
        bool succeeded = false;
    };
    void start(const std::string& file, std::uint64_t total, std::uint64_t resumed) override {
        files.push_back({file, total, resumed, resumed});
    }
    void advance(std::uint64_t done) override {
        ASSERT_FALSE(files.empty());
        EXPECT_GE(done, files.back().last) << "progress went backwards";
        files.back().last = done;
    }
    void finish(bool succeeded) override {
        ASSERT_FALSE(files.empty());
        files.back().finished = true;
        files.back().succeeded = succeeded;
    }
    std::vector<File> files;
};

class HubTest : public ::testing::Test {
  protected:
    HubOptions options() const {
        HubOptions result;
        result.endpoint = hub.endpoint();
        result.cache_dir = cache.path();
        result.retry_delay = std::chrono::milliseconds(1);
        return result;
    }
    // Requests whose path starts with `prefix`.
    std::vector<HubStandIn::Request> requests_to(const std::string& prefix) const {
        std::vector<HubStandIn::Request> matching;
        for (const auto& request : hub.requests()) {
            if (request.path.starts_with(prefix)) matching.push_back(request);
        }
        return matching;
    }
    std::vector<HubStandIn::Request> cdn_gets() const {
        std::vector<HubStandIn::Request> gets;
        for (const auto& request : requests_to("/cdn/")) {
            if (request.method == "GET") gets.push_back(request);
        }
        return gets;
    }
    fs::path repo_dir(const fs::path& model) const {
        return cache.path() / ("models--test-org--" + model.filename().string());
    }

    HubStandIn hub;
    ScratchDir cache;
};

// The first fixture folder whose weights are one safetensors file (the fault tests need one
// LFS file of known name).
fs::path single_file_model() {
    for (const fs::path& dir : fixture_models()) {
        if (fs::exists(dir / "model.safetensors")) return dir;
    }
    return {};
}

#define REQUIRE_SINGLE_FILE_MODEL(dir)        \
    const fs::path dir = single_file_model(); \
    if (dir.empty()) GTEST_SKIP() << "no fixture model with a single model.safetensors"

// ---------------------------------------------------------------------------------------------
// Fresh downloads of every fixture model

class FixtureDownload : public HubTest, public ::testing::WithParamInterface<fs::path> {};

TEST_P(FixtureDownload, FilesAndCacheLayoutMatchTheHub) {
    const fs::path source = GetParam();
    const std::string commit = hub.add_repo(repo_name(source), source);
    RecordingProgress progress;
    const fs::path snapshot = resolve_model(repo_name(source), options(), &progress);

    EXPECT_EQ(snapshot, repo_dir(source) / "snapshots" / commit);
    EXPECT_EQ(read_text(repo_dir(source) / "refs" / "main"), commit);

    const std::set<std::string> expected = files_a_download_needs(source);
    std::set<std::string> present;
    for (const auto& entry : fs::directory_iterator(snapshot)) {
        present.insert(entry.path().filename().string());
    }
    EXPECT_EQ(present, expected);
    for (const std::string& file : expected) {
        SCOPED_TRACE(file);
        const fs::path link = snapshot / file;
        ASSERT_TRUE(fs::is_symlink(link));
        const std::string contents = read_text(source / file);
        // Relative links into blobs/, named by ETag: SHA-256 for LFS files, git id otherwise.
        const std::string blob_name =
            is_lfs(file) ? HubStandIn::sha256_hex(contents) : HubStandIn::git_blob_id(contents);
        EXPECT_EQ(fs::read_symlink(link), fs::path("..") / ".." / "blobs" / blob_name);
        EXPECT_TRUE(read_text(link) == contents) << "downloaded bytes differ";
        EXPECT_TRUE(fs::is_regular_file(repo_dir(source) / "blobs" / blob_name));
    }
    for (const auto& entry : fs::directory_iterator(repo_dir(source) / "blobs")) {
        EXPECT_NE(entry.path().extension(), ".incomplete");
    }

    // Nothing beyond what a model needs was fetched (no reference logits, no READMEs).
    for (const auto& request : requests_to("/" + repo_name(source) + "/resolve/")) {
        const std::string file = request.path.substr(request.path.rfind('/') + 1);
        if (request.method == "GET") {
            EXPECT_TRUE(expected.contains(file)) << request.path;
        }
    }
    // Every file reported its progress to the end.
    std::set<std::string> reported;
    for (const auto& file : progress.files) {
        EXPECT_TRUE(file.finished && file.succeeded) << file.name;
        EXPECT_EQ(file.last, fs::file_size(source / file.name)) << file.name;
        reported.insert(file.name);
    }
    EXPECT_EQ(reported, expected);
}

std::string param_name(const ::testing::TestParamInfo<fs::path>& info) {
    std::string name =
        info.param.parent_path().filename().string() + "_" + info.param.filename().string();
    for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    return name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureDownload, ::testing::ValuesIn(fixture_models()),
                         param_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(FixtureDownload);

// ---------------------------------------------------------------------------------------------
// The cache

TEST_F(HubTest, SecondResolveComesFromTheCacheWithoutRequests) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);
    const fs::path first = resolve_model(repo_name(source), options());
    ASSERT_FALSE(hub.requests().empty());
    hub.clear_requests();
    EXPECT_EQ(resolve_model(repo_name(source), options()), first);
    EXPECT_TRUE(hub.requests().empty());
}

TEST_F(HubTest, PinnedCommitAndExtraCacheDirs) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    const std::string commit = hub.add_repo(repo_name(source), source);
    const fs::path snapshot = resolve_model(repo_name(source) + "@" + commit, options());
    EXPECT_EQ(snapshot.filename(), commit);
    EXPECT_FALSE(fs::exists(repo_dir(source) / "refs" / "main"));  // a commit needs no ref

    // The same cache as a read-only extra directory of another configuration.
    ScratchDir other;
    HubOptions elsewhere = options();
    elsewhere.cache_dir = other.path();
    elsewhere.extra_cache_dirs = {cache.path()};
    hub.clear_requests();
    EXPECT_EQ(resolve_model(repo_name(source) + "@" + commit, elsewhere), snapshot);
    EXPECT_TRUE(hub.requests().empty());
}

TEST_F(HubTest, ListCachedModels) {
    const auto models = fixture_models();
    if (models.size() < 2) GTEST_SKIP() << "needs two fixture models";
    std::map<std::string, fs::path> sources;
    for (const fs::path& source : {models[0], models[1]}) {
        hub.add_repo(repo_name(source), source);
        resolve_model(repo_name(source), options());
        sources[repo_name(source)] = source;
    }
    const auto listed = list_cached_models(options());
    ASSERT_EQ(listed.size(), 2u);
    for (const CachedModel& model : listed) {
        SCOPED_TRACE(model.repo_id);
        ASSERT_TRUE(sources.contains(model.repo_id));
        const fs::path& source = sources[model.repo_id];
        std::uintmax_t expected_bytes = 0;
        for (const std::string& file : files_a_download_needs(source)) {
            expected_bytes += fs::file_size(source / file);
        }
        EXPECT_EQ(model.revisions, std::vector<std::string>{"main"});
        EXPECT_EQ(model.size_bytes, expected_bytes);
        EXPECT_EQ(model.path, repo_dir(source));
    }
    EXPECT_LT(listed[0].repo_id, listed[1].repo_id);

    HubOptions empty = options();
    ScratchDir nothing;
    empty.cache_dir = nothing.path();
    EXPECT_TRUE(list_cached_models(empty).empty());
}

// ---------------------------------------------------------------------------------------------
// GGUF files by quantization tag or file name ("org/name:Q4_K_M")

// A GGUF repository laid out as the Hub's usually are: one file per quantization, one split in
// two parts, two files holding the same tag, and a README. The contents are a fixture GGUF file
// (any: resolving does not parse it); split parts are placeholders.
class GgufHubTest : public HubTest {
  protected:
    void SetUp() override {
        for (const fs::path& dir : subdirectories(fixtures_dir() / "gguf")) {
            if (fs::exists(dir / "model.gguf")) gguf_source = dir / "model.gguf";
        }
        if (gguf_source.empty()) GTEST_SKIP() << "no fixture GGUF file under gguf/";
        for (const char* name :
             {"tiny-Q8_0.gguf", "tiny-F16.gguf", "first-Q6_K.gguf", "second-Q6_K.gguf"}) {
            fs::copy_file(gguf_source, repo.path() / name);
        }
        for (const char* part :
             {"tiny-Q4_K_M-00001-of-00002.gguf", "tiny-Q4_K_M-00002-of-00002.gguf"}) {
            std::ofstream(repo.path() / part) << "part";
        }
        std::ofstream(repo.path() / "README.md") << "# tiny GGUF files";
        commit = hub.add_repo(kRepo, repo.path());
    }
    std::string file_list_path() const { return std::string("/api/models/") + kRepo; }

    static constexpr const char* kRepo = "test-org/tiny-GGUF";
    fs::path gguf_source;
    ScratchDir repo;
    std::string commit;
};

TEST_F(GgufHubTest, QuantizationTagPicksItsFileFromTheListThenTheCacheServesIt) {
    const fs::path file = resolve_model(std::string(kRepo) + ":q8_0", options());  // any case
    EXPECT_EQ(file.filename(), "tiny-Q8_0.gguf");
    EXPECT_EQ(file.parent_path().filename(), commit);
    EXPECT_TRUE(read_text(file) == read_text(gguf_source));
    EXPECT_EQ(requests_to(file_list_path()).size(), 1u);
    EXPECT_EQ(read_text(cache.path() / "models--test-org--tiny-GGUF" / "refs" / "main"), commit);

    hub.clear_requests();
    EXPECT_EQ(resolve_model(std::string(kRepo) + ":Q8_0", options()), file);
    HubOptions offline = options();
    offline.offline = true;
    EXPECT_EQ(resolve_model(std::string(kRepo) + ":Q8_0", offline), file);
    EXPECT_TRUE(hub.requests().empty()) << "a cached GGUF file must not touch the network";
}

TEST_F(GgufHubTest, AFileNameIsFetchedWithoutTheList) {
    const fs::path file = resolve_model(std::string(kRepo) + ":tiny-F16.gguf@" + commit, options());
    EXPECT_EQ(file.filename(), "tiny-F16.gguf");
    EXPECT_TRUE(read_text(file) == read_text(gguf_source));
    EXPECT_TRUE(requests_to("/api/").empty());
}

TEST_F(GgufHubTest, NoneSeveralOrSplitMatchesAreNamedErrors) {
    std::string message = expect_error(
        ErrorCode::kNotFound, [&] { resolve_model(std::string(kRepo) + ":Q3_K_S", options()); });
    EXPECT_TRUE(contains(message, "no .gguf file")) << message;
    EXPECT_TRUE(contains(message, "tiny-Q8_0.gguf")) << message;  // what there is
    EXPECT_FALSE(contains(message, "README.md")) << message;

    // Q4_K is a word of neither Q4_K_M part: not a match; Q4_K_M is split in two parts.
    message = expect_error(ErrorCode::kNotFound,
                           [&] { resolve_model(std::string(kRepo) + ":Q4_K", options()); });
    EXPECT_TRUE(contains(message, "matches 'Q4_K'")) << message;
    message = expect_error(ErrorCode::kInvalidArgument,
                           [&] { resolve_model(std::string(kRepo) + ":Q4_K_M", options()); });
    EXPECT_TRUE(contains(message, "split into 2 files")) << message;
    EXPECT_TRUE(contains(message, "llama-gguf-split --merge")) << message;

    message = expect_error(ErrorCode::kInvalidArgument,
                           [&] { resolve_model(std::string(kRepo) + ":Q6_K", options()); });
    EXPECT_TRUE(contains(message, "first-Q6_K.gguf, second-Q6_K.gguf")) << message;
    EXPECT_TRUE(contains(message, std::string(kRepo) + ":<file>.gguf")) << message;

    message = expect_error(ErrorCode::kNotFound,
                           [&] { resolve_model(std::string(kRepo) + ":absent.gguf", options()); });
    EXPECT_TRUE(contains(message, "has no file 'absent.gguf'")) << message;
    message = expect_error(ErrorCode::kNotFound,
                           [&] { resolve_model("test-org/absent:Q8_0", options()); });
    EXPECT_TRUE(contains(message, "was not found")) << message;

    HubOptions offline = options();
    offline.offline = true;
    message = expect_error(ErrorCode::kNotFound,
                           [&] { resolve_model(std::string(kRepo) + ":F16", offline); });
    EXPECT_TRUE(contains(message, "HF_HUB_OFFLINE")) << message;
}

// ---------------------------------------------------------------------------------------------
// Interrupted, corrupted and failing downloads

TEST_F(HubTest, InterruptedTransferResumesWithARangeRequest) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);
    const std::size_t size = fs::file_size(source / "model.safetensors");
    const std::size_t cut = size / 3;
    hub.drop_after("model.safetensors", cut);

    const fs::path snapshot = resolve_model(repo_name(source), options());
    EXPECT_TRUE(read_text(snapshot / "model.safetensors") ==
                read_text(source / "model.safetensors"));
    const auto gets = cdn_gets();
    ASSERT_EQ(gets.size(), 2u);
    EXPECT_EQ(gets[0].range, "");
    EXPECT_EQ(gets[0].body_bytes, cut);
    EXPECT_EQ(gets[1].range, "bytes=" + std::to_string(cut) + "-");
    EXPECT_EQ(gets[1].status, 206);
    EXPECT_EQ(gets[1].body_bytes, size - cut);  // only the rest was fetched
}

TEST_F(HubTest, InterruptedDownloadResumesOnTheNextRun) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);
    const std::size_t size = fs::file_size(source / "model.safetensors");
    const std::size_t cut = size / 2;
    hub.drop_after("model.safetensors", cut);
    HubOptions once = options();
    once.max_attempts = 1;

    const std::string message =
        expect_error(ErrorCode::kUnavailable, [&] { resolve_model(repo_name(source), once); });
    EXPECT_TRUE(contains(message, "model.safetensors")) << message;
    EXPECT_TRUE(contains(message, "resume")) << message;
    EXPECT_FALSE(fs::exists(repo_dir(source) / "refs" / "main"));  // not reachable by name yet
    const fs::path partial =
        repo_dir(source) / "blobs" /
        (HubStandIn::sha256_hex(read_text(source / "model.safetensors")) + ".incomplete");
    ASSERT_TRUE(fs::exists(partial));
    EXPECT_EQ(fs::file_size(partial), cut);

    hub.clear_requests();
    RecordingProgress progress;
    const fs::path snapshot = resolve_model(repo_name(source), once, &progress);
    EXPECT_TRUE(read_text(snapshot / "model.safetensors") ==
                read_text(source / "model.safetensors"));
    const auto gets = cdn_gets();
    ASSERT_EQ(gets.size(), 1u);
    EXPECT_EQ(gets[0].range, "bytes=" + std::to_string(cut) + "-");
    EXPECT_EQ(gets[0].body_bytes, size - cut);
    ASSERT_FALSE(progress.files.empty());
    EXPECT_EQ(progress.files.back().resumed, cut);
}

TEST_F(HubTest, ServerIgnoringRangeRestartsCleanly) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);
    const std::size_t size = fs::file_size(source / "model.safetensors");
    hub.drop_after("model.safetensors", size / 4);
    HubOptions once = options();
    once.max_attempts = 1;
    EXPECT_THROW(resolve_model(repo_name(source), once), Error);

    hub.clear_requests();
    hub.ignore_range(true);
    const fs::path snapshot = resolve_model(repo_name(source), once);
    EXPECT_TRUE(read_text(snapshot / "model.safetensors") ==
                read_text(source / "model.safetensors"));
    const auto gets = cdn_gets();
    ASSERT_EQ(gets.size(), 1u);
    EXPECT_EQ(gets[0].range, "bytes=" + std::to_string(size / 4) + "-");  // asked to resume
    EXPECT_EQ(gets[0].status, 200);                                       // got everything
    EXPECT_EQ(gets[0].body_bytes, size);
}

TEST_F(HubTest, CorruptedBlobIsDetectedAndRemoved) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);
    hub.corrupt("model.safetensors", true);
    const std::string message =
        expect_error(ErrorCode::kCorruptData, [&] { resolve_model(repo_name(source), options()); });
    EXPECT_TRUE(contains(message, "model.safetensors")) << message;
    EXPECT_TRUE(contains(message, "SHA-256")) << message;
    const fs::path blob = repo_dir(source) / "blobs" /
                          HubStandIn::sha256_hex(read_text(source / "model.safetensors"));
    EXPECT_FALSE(fs::exists(blob)) << "corrupt data kept";
    EXPECT_FALSE(fs::exists(blob.string() + ".incomplete")) << "corrupt data kept";
    hub.corrupt("model.safetensors", false);
    const fs::path snapshot = resolve_model(repo_name(source), options());
    EXPECT_TRUE(read_text(snapshot / "model.safetensors") ==
                read_text(source / "model.safetensors"));
}

TEST_F(HubTest, ServerErrorsAndMissingThings) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);

    std::string message = expect_error(ErrorCode::kNotFound,
                                       [&] { resolve_model("test-org/no-such-model", options()); });
    EXPECT_TRUE(contains(message, "test-org/no-such-model")) << message;

    message = expect_error(ErrorCode::kNotFound, [&] {
        resolve_model(repo_name(source) + "@no-such-branch", options());
    });
    EXPECT_TRUE(contains(message, "no-such-branch")) << message;

    // Server errors are retried, then reported.
    hub.clear_requests();
    hub.fail_requests("config.json", 500, 10);
    message =
        expect_error(ErrorCode::kUnavailable, [&] { resolve_model(repo_name(source), options()); });
    EXPECT_TRUE(contains(message, "500")) << message;
    EXPECT_EQ(requests_to("/" + repo_name(source)).size(),
              static_cast<std::size_t>(options().max_attempts));
    hub.fail_requests("config.json", 500, 0);

    // Weights failing on the CDN every time: retried, then reported.
    hub.clear_requests();
    hub.fail_contents("model.safetensors", 503, 10);
    message =
        expect_error(ErrorCode::kUnavailable, [&] { resolve_model(repo_name(source), options()); });
    EXPECT_TRUE(contains(message, "503")) << message;
    EXPECT_EQ(cdn_gets().size(), static_cast<std::size_t>(options().max_attempts));
    hub.fail_contents("model.safetensors", 503, 0);

    // A repository without weights.
    ScratchDir config_only;
    fs::copy_file(source / "config.json", config_only.path() / "config.json");
    hub.add_repo("test-org/config-only", config_only.path());
    message = expect_error(ErrorCode::kNotFound,
                           [&] { resolve_model("test-org/config-only", options()); });
    EXPECT_TRUE(contains(message, "no weights")) << message;

    // Nothing listens on the endpoint.
    HubOptions unreachable = options();
    unreachable.endpoint = "http://127.0.0.1:9";
    expect_error(ErrorCode::kUnavailable, [&] { resolve_model(repo_name(source), unreachable); });

    // One failure of each kind is absorbed by the retries.
    hub.fail_requests("config.json", 502);
    hub.fail_contents("model.safetensors", 503);
    const fs::path snapshot = resolve_model(repo_name(source), options());
    EXPECT_TRUE(read_text(snapshot / "model.safetensors") ==
                read_text(source / "model.safetensors"));
}

TEST_F(HubTest, GatedModelNeedsAToken) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo("test-org/gated", source, /*gated=*/true);
    const std::string message = expect_error(ErrorCode::kPermissionDenied,
                                             [&] { resolve_model("test-org/gated", options()); });
    EXPECT_TRUE(contains(message, "HF_TOKEN")) << message;
    EXPECT_TRUE(contains(message, "test-org/gated")) << message;

    HubOptions with_token = options();
    with_token.token = hub.token();
    hub.clear_requests();
    const fs::path snapshot = resolve_model("test-org/gated", with_token);
    EXPECT_TRUE(read_text(snapshot / "config.json") == read_text(source / "config.json"));
    for (const auto& request : requests_to("/test-org/gated/")) {
        EXPECT_EQ(request.authorization, "Bearer " + hub.token()) << request.path;
    }
    // The CDN is another origin: the token must not travel there.
    ASSERT_FALSE(cdn_gets().empty());
    for (const auto& request : cdn_gets()) EXPECT_EQ(request.authorization, "") << request.path;
}

TEST_F(HubTest, ConcurrentResolvesDownloadEachBlobOnce) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);
    fs::path results[2];
    std::string errors[2];
    std::thread threads[2];
    for (int i = 0; i < 2; ++i) {
        threads[i] = std::thread([&, i] {
            try {
                results[i] = resolve_model(repo_name(source), options());
            } catch (const Error& error) {
                errors[i] = error.what();
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(errors[0], "");
    EXPECT_EQ(errors[1], "");
    EXPECT_EQ(results[0], results[1]);
    EXPECT_EQ(cdn_gets().size(), 1u);
    EXPECT_TRUE(read_text(results[0] / "model.safetensors") ==
                read_text(source / "model.safetensors"));
}

// ---------------------------------------------------------------------------------------------
// Offline mode and local directories

TEST_F(HubTest, OfflineUsesOnlyTheCache) {
    REQUIRE_SINGLE_FILE_MODEL(source);
    hub.add_repo(repo_name(source), source);
    HubOptions offline = options();
    offline.offline = true;

    std::string message =
        expect_error(ErrorCode::kNotFound, [&] { resolve_model(repo_name(source), offline); });
    EXPECT_TRUE(contains(message, repo_name(source))) << message;
    EXPECT_TRUE(contains(message, "HF_HUB_OFFLINE")) << message;
    EXPECT_TRUE(contains(message, "config.json")) << message;
    EXPECT_TRUE(hub.requests().empty());
    expect_error(ErrorCode::kUnavailable,
                 [&] { download_model(ModelRef::parse(repo_name(source)), offline); });
    EXPECT_TRUE(hub.requests().empty());

    const fs::path snapshot = resolve_model(repo_name(source), options());
    hub.clear_requests();
    EXPECT_EQ(resolve_model(repo_name(source), offline), snapshot);

    // A snapshot that lost its weights: the message says which file is missing.
    fs::remove(snapshot / "model.safetensors");
    message =
        expect_error(ErrorCode::kNotFound, [&] { resolve_model(repo_name(source), offline); });
    EXPECT_TRUE(contains(message, "model.safetensors")) << message;
    EXPECT_TRUE(hub.requests().empty());
}

TEST_F(HubTest, LocalDirectoriesPassThrough) {
    for (const fs::path& source : fixture_models()) {
        EXPECT_TRUE(fs::equivalent(resolve_model(source.string(), options()), source));
    }
    EXPECT_TRUE(hub.requests().empty());

    ScratchDir config_only;
    const auto models = fixture_models();
    ASSERT_FALSE(models.empty());
    fs::copy_file(models[0] / "config.json", config_only.path() / "config.json");
    std::string message = expect_error(
        ErrorCode::kNotFound, [&] { resolve_model(config_only.path().string(), options()); });
    EXPECT_TRUE(contains(message, "weights")) << message;

    // An index whose shard is missing names the shard.
    std::ofstream(config_only.path() / "model.safetensors.index.json")
        << R"({"weight_map": {"wte.weight": "model-00001-of-00002.safetensors"}})";
    message = expect_error(ErrorCode::kNotFound,
                           [&] { resolve_model(config_only.path().string(), options()); });
    EXPECT_TRUE(contains(message, "model-00001-of-00002.safetensors")) << message;

    message =
        expect_error(ErrorCode::kNotFound, [&] { resolve_model("./no/such/dir", options()); });
    EXPECT_TRUE(contains(message, "./no/such/dir")) << message;
    EXPECT_TRUE(hub.requests().empty());
}

// ---------------------------------------------------------------------------------------------
// Names and options

TEST(ModelRefTest, ParsesHubIds) {
    const ModelRef plain = ModelRef::parse("gpt2");
    EXPECT_EQ(plain.repo_id, "gpt2");
    EXPECT_EQ(plain.revision, "main");
    const ModelRef org = ModelRef::parse("openai-community/gpt2");
    EXPECT_EQ(org.repo_id, "openai-community/gpt2");
    const ModelRef pinned = ModelRef::parse("someone/x@v1.0");
    EXPECT_EQ(pinned.repo_id, "someone/x");
    EXPECT_EQ(pinned.revision, "v1.0");
    EXPECT_EQ(pinned.to_string(), "someone/x@v1.0");
    EXPECT_EQ(ModelRef::parse("Org_1/Model-2.5_b@refs/pr/1").revision, "refs/pr/1");
    EXPECT_EQ(ModelRef::parse(std::string(96, 'a')).repo_id, std::string(96, 'a'));

    const ModelRef quant = ModelRef::parse("org/model-GGUF:Q4_K_M");
    EXPECT_EQ(quant.repo_id, "org/model-GGUF");
    EXPECT_EQ(quant.gguf, "Q4_K_M");
    EXPECT_EQ(quant.revision, "main");
    EXPECT_EQ(quant.to_string(), "org/model-GGUF:Q4_K_M");
    const ModelRef file = ModelRef::parse("org/m:sub/m-f16.gguf@v1");
    EXPECT_EQ(file.repo_id, "org/m");
    EXPECT_EQ(file.gguf, "sub/m-f16.gguf");
    EXPECT_EQ(file.revision, "v1");
    EXPECT_EQ(file.to_string(), "org/m:sub/m-f16.gguf@v1");
}

TEST(ModelRefTest, RejectsInvalidIds) {
    for (const std::string& bad : std::vector<std::string>{"",
                                                           "/gpt2",
                                                           "gpt2/",
                                                           "a/b/c",
                                                           "a//b",
                                                           "a--b/c",
                                                           "org/a..b",
                                                           "-abc",
                                                           "abc-",
                                                           ".abc",
                                                           "a b",
                                                           "x@",
                                                           "@main",
                                                           "a/b@..",
                                                           "a/b@re v",
                                                           "a/b@/main",
                                                           "a/b@main/",
                                                           "a/b@x//y",
                                                           "a/b:",
                                                           "a/b:../x.gguf",
                                                           "a/b:/x.gguf",
                                                           "a/b:Q4 K",
                                                           "a/b:c:d",
                                                           "caf\xc3\xa9",
                                                           std::string(97, 'a'),
                                                           "org/" + std::string(97, 'b')}) {
        const std::string message =
            expect_error(ErrorCode::kInvalidArgument, [&] { ModelRef::parse(bad); });
        EXPECT_TRUE(contains(message, "'" + bad + "'")) << message;
    }
}

TEST(HubOptionsTest, FromEnvironment) {
    const char* names[] = {"HF_ENDPOINT",  "HF_TOKEN",       "HF_TOKEN_PATH",  "HF_HOME",
                           "HF_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "HOME"};
    std::map<std::string, std::optional<std::string>> saved;
    for (const char* name : names) {
        const char* value = std::getenv(name);
        saved[name] = value ? std::optional<std::string>(value) : std::nullopt;
        ::unsetenv(name);
    }
    ScratchDir home;
    ::setenv("HOME", home.path().c_str(), 1);
    HubOptions defaults = HubOptions::from_environment();
    EXPECT_EQ(defaults.endpoint, "https://huggingface.co");
    EXPECT_EQ(defaults.cache_dir, home.path() / ".cache" / "huggingface" / "hub");
    EXPECT_FALSE(defaults.token);
    EXPECT_FALSE(defaults.offline);
    EXPECT_TRUE(defaults.extra_cache_dirs.empty());

    ::setenv("HF_HOME", (home.path() / "hf").c_str(), 1);
    std::ofstream(home.path() / "hf-token") << "  hf_from_file \n";
    fs::create_directories(home.path() / "hf");
    std::ofstream(home.path() / "hf" / "token") << "hf_login_token\n";
    HubOptions with_home = HubOptions::from_environment();
    EXPECT_EQ(with_home.cache_dir, home.path() / "hf" / "hub");
    EXPECT_EQ(with_home.token, "hf_login_token");
    ::setenv("HF_TOKEN_PATH", (home.path() / "hf-token").c_str(), 1);
    EXPECT_EQ(HubOptions::from_environment().token, "hf_from_file");

    ::setenv("HF_ENDPOINT", "http://mirror.local:8080/", 1);
    ::setenv("HF_TOKEN", "hf_env", 1);
    ::setenv("HF_HUB_CACHE", "/data/hf-cache", 1);
    ::setenv("HF_HUB_OFFLINE", "1", 1);
    HubOptions set = HubOptions::from_environment();
    EXPECT_EQ(set.endpoint, "http://mirror.local:8080");
    EXPECT_EQ(set.token, "hf_env");
    EXPECT_EQ(set.cache_dir, fs::path("/data/hf-cache"));
    EXPECT_TRUE(set.offline);
    ::setenv("HF_HUB_OFFLINE", "0", 1);
    EXPECT_FALSE(HubOptions::from_environment().offline);

    for (const auto& [name, value] : saved) {
        if (value) {
            ::setenv(name.c_str(), value->c_str(), 1);
        } else {
            ::unsetenv(name.c_str());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Progress output

// A clock the test moves by hand.
struct FakeClock {
    std::chrono::steady_clock::time_point now{};
    Clock function() {
        return [this] { return now; };
    }
};

std::string captured(std::FILE* file) {
    std::fflush(file);
    std::rewind(file);
    std::string text;
    for (int c = std::fgetc(file); c != EOF; c = std::fgetc(file)) text += static_cast<char>(c);
    return text;
}

TEST(ProgressTest, TerminalBarRedrawsInPlace) {
    std::FILE* out = std::tmpfile();
    ASSERT_NE(out, nullptr);
    FakeClock clock;
    TerminalProgress bar(out, clock.function());
    bar.start("model.safetensors", 4 * 1024 * 1024, 0);
    clock.now += std::chrono::seconds(1);
    bar.advance(1024 * 1024);  // 1 MiB/s, 3 MiB left
    clock.now += std::chrono::milliseconds(10);
    bar.advance(1024 * 1024 + 10);  // within 100 ms of the last draw: not drawn
    clock.now += std::chrono::seconds(1);
    bar.finish(true);
    const std::string text = captured(out);
    std::fclose(out);

    EXPECT_EQ(std::count(text.begin(), text.end(), '\r'), 3) << text;  // start, advance, finish
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;  // only at the end
    EXPECT_TRUE(contains(text, "model.safetensors")) << text;
    EXPECT_TRUE(contains(text, " 25% 1.0 MiB/4.0 MiB 1.0 MiB/s ETA 0:03")) << text;
}

TEST(ProgressTest, LogLinesArePeriodic) {
    std::FILE* out = std::tmpfile();
    ASSERT_NE(out, nullptr);
    FakeClock clock;
    LogProgress log(out, std::chrono::seconds(10), clock.function());
    log.start("pytorch_model.bin", 2000, 500);
    for (int second = 1; second <= 25; ++second) {
        clock.now += std::chrono::seconds(1);
        log.advance(500 + 60 * second);
    }
    log.finish(true);
    const std::string text = captured(out);
    std::fclose(out);

    EXPECT_EQ(text.find('\r'), std::string::npos) << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4) << text;  // start, 10 s, 20 s, done
    EXPECT_TRUE(contains(text, "downloading pytorch_model.bin (2.0 KiB), resuming after 500 B"))
        << text;
    EXPECT_TRUE(contains(text, "pytorch_model.bin: 1.1 KiB of 2.0 KiB (55%) at 60 B/s, ETA 0:15"))
        << text;
    EXPECT_TRUE(contains(text, "pytorch_model.bin: done")) << text;
}

TEST(ProgressTest, Formats) {
    EXPECT_EQ(format_bytes(0), "0 B");
    EXPECT_EQ(format_bytes(1023), "1023 B");
    EXPECT_EQ(format_bytes(1536), "1.5 KiB");
    EXPECT_EQ(format_bytes(3.0 * 1024 * 1024 * 1024), "3.0 GiB");
    EXPECT_EQ(format_duration(std::chrono::seconds(7)), "0:07");
    EXPECT_EQ(format_duration(std::chrono::seconds(725)), "12:05");
    EXPECT_EQ(format_duration(std::chrono::seconds(3723)), "1:02:03");
}

}  // namespace
}  // namespace llmserve::hub
