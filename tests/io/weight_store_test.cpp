// WeightStore against every fixture model folder (checked against an independent reading of the
// files' headers) and against damaged directories built in a scratch directory.
#include "io/weight_store.h"

#include "test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <map>
#include <set>

namespace llmserve::io {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::expect_error;
using testing::ScratchDir;

constexpr std::string_view kPrefix = "transformer.";

std::string strip_prefix(std::string name) {
    return name.starts_with(kPrefix) ? name.substr(kPrefix.size()) : name;
}

// What the test itself reads from a safetensors file, without the code under test.
struct RawTensor {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> bytes;
    std::size_t end_in_file;  // offset from the start of the file
};

std::uint64_t header_length(std::span<const std::byte> file) {
    std::uint64_t header_bytes = 0;
    std::memcpy(&header_bytes, file.data(), 8);  // little-endian host
    return header_bytes;
}

std::map<std::string, RawTensor> read_raw(const fs::path& path) {
    const auto file = testing::read_bytes(path);
    const std::uint64_t header_bytes = header_length(file);
    const json header = json::parse(reinterpret_cast<const char*>(file.data()) + 8,
                                    reinterpret_cast<const char*>(file.data()) + 8 + header_bytes);
    std::map<std::string, RawTensor> tensors;
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") continue;
        const auto begin = entry["data_offsets"][0].get<std::size_t>() + 8 + header_bytes;
        const auto end = entry["data_offsets"][1].get<std::size_t>() + 8 + header_bytes;
        tensors[name] = {entry["dtype"].get<std::string>(),
                         entry["shape"].get<std::vector<std::int64_t>>(),
                         {file.begin() + static_cast<std::ptrdiff_t>(begin),
                          file.begin() + static_cast<std::ptrdiff_t>(end)},
                         end};
    }
    return tensors;
}

std::string dtype_name(DType dtype) {
    switch (dtype) {
        case DType::kF32:
            return "F32";
        case DType::kF16:
            return "F16";
        case DType::kBF16:
            return "BF16";
        default:
            break;
    }
    return "?";
}

// Every tensor of every fixture folder: found under its normalised name, with the dtype, shape
// and bytes that the file holds, from the file the index names.
TEST(WeightStoreFixtures, EveryFolderMatchesAnIndependentReading) {
    const auto dirs = testing::model_dirs();
    ASSERT_FALSE(dirs.empty()) << "no model folders under " << testing::fixtures_dir();
    for (const auto& dir : dirs) {
        SCOPED_TRACE(dir.string());
        const WeightStore store = WeightStore::open_directory(dir);
        EXPECT_EQ(store.directory(), dir);

        // file -> its tensors, per the index when there is one.
        std::map<fs::path, std::set<std::string>> expected_files;
        if (fs::exists(dir / "model.safetensors")) {
            for (const auto& [name, raw] : read_raw(dir / "model.safetensors")) {
                expected_files[dir / "model.safetensors"].insert(name);
            }
        } else {
            const json index =
                json::parse(testing::read_text(dir / "model.safetensors.index.json"));
            for (const auto& [name, file] : index["weight_map"].items()) {
                expected_files[dir / file.get<std::string>()].insert(name);
            }
        }

        std::set<std::string> expected_names;
        std::size_t expected_bytes = 0;
        for (const auto& [path, listed] : expected_files) {
            const auto raw_tensors = read_raw(path);
            std::set<std::string> in_file;
            for (const auto& [name, raw] : raw_tensors) in_file.insert(name);
            EXPECT_EQ(in_file, listed) << path;
            for (const auto& [stored_name, raw] : raw_tensors) {
                SCOPED_TRACE(stored_name);
                const std::string name = strip_prefix(stored_name);
                expected_names.insert(name);
                expected_bytes += raw.bytes.size();
                const TensorView* view = store.find(name);
                ASSERT_NE(view, nullptr);
                EXPECT_EQ(view->name, stored_name);
                EXPECT_EQ(view->file, path.string());
                EXPECT_EQ(dtype_name(view->dtype), raw.dtype);
                EXPECT_EQ(view->shape, raw.shape);
                ASSERT_EQ(view->data.size(),
                          static_cast<std::size_t>(view->numel()) * dtype_size(view->dtype));
                ASSERT_EQ(view->data.size(), raw.bytes.size());
                EXPECT_EQ(std::memcmp(view->data.data(), raw.bytes.data(), raw.bytes.size()), 0);
            }
        }
        const auto names = store.names();
        EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected_names);
        EXPECT_EQ(store.total_bytes(), expected_bytes);
        for (const auto& name : names) EXPECT_FALSE(name.starts_with(kPrefix)) << name;
    }
}

// The names the model loader asks for exist, with the shapes config.json implies; the hub
// layout's attention-mask buffers are kept but are causal masks, not parameters.
TEST(WeightStoreFixtures, LoaderNamesAndMaskBuffers) {
    for (const auto& dir : testing::model_dirs()) {
        SCOPED_TRACE(dir.string());
        const json config = json::parse(testing::read_text(dir / "config.json"));
        const json reference = json::parse(testing::read_text(dir / "reference.json"));
        const std::int64_t n_embd = config["n_embd"], vocab = config["vocab_size"];
        const std::int64_t n_positions = config["n_positions"], n_layer = config["n_layer"];
        const WeightStore store = WeightStore::open_directory(dir);

        const std::vector<std::int64_t> wte_shape{vocab, n_embd};
        EXPECT_EQ(store.require("wte.weight", wte_shape).shape, wte_shape);
        const std::vector<std::int64_t> c_attn_shape{n_embd, 3 * n_embd};
        EXPECT_EQ(store.require("h.0.attn.c_attn.weight", c_attn_shape).shape, c_attn_shape);

        const bool hub_layout = reference.contains("key_prefix") && !reference["key_prefix"];
        for (std::int64_t layer = 0; layer < n_layer; ++layer) {
            const std::string name = "h." + std::to_string(layer) + ".attn.bias";
            const TensorView* mask = store.find(name);
            if (hub_layout) {
                ASSERT_NE(mask, nullptr) << name;
            }
            if (mask == nullptr) continue;
            EXPECT_EQ(mask->name, name);  // the hub layout stores names without "transformer."
            ASSERT_EQ(mask->shape, (std::vector<std::int64_t>{1, 1, n_positions, n_positions}));
            std::vector<float> values(static_cast<std::size_t>(mask->numel()));
            convert_to_f32(mask->dtype, mask->data.data(), values.size(), values.data());
            for (std::int64_t row = 0; row < n_positions; ++row) {
                for (std::int64_t column = 0; column < n_positions; ++column) {
                    ASSERT_EQ(values[static_cast<std::size_t>(row * n_positions + column)],
                              column <= row ? 1.0f : 0.0f)
                        << name << " at " << row << "," << column;
                }
            }
        }
        if (!hub_layout) {
            for (const auto& name : store.names()) {
                EXPECT_EQ(store.find(name)->name, std::string(kPrefix) + name);
            }
        }
    }
}

TEST(WeightStoreFixtures, EmbeddedModelOpens) {
    const fs::path dir = fs::path(LLMSERVE_SOURCE_DIR) / "models" / "gpt2-brown-mini";
    const WeightStore store = WeightStore::open_directory(dir);
    const json config = json::parse(testing::read_text(dir / "config.json"));
    const std::vector<std::int64_t> wte_shape{config["vocab_size"], config["n_embd"]};
    EXPECT_EQ(store.require("wte.weight", wte_shape).dtype, DType::kF16);
    // save_pretrained leaves no gaps: the tensors cover everything after the header.
    const auto file = testing::read_bytes(dir / "model.safetensors");
    EXPECT_EQ(store.total_bytes(), file.size() - 8 - header_length(file));
}

TEST(WeightStoreFixtures, RequireReportsMissingTensorsAndWrongShapes) {
    const fs::path dir = testing::model_dirs().front();
    const WeightStore store = WeightStore::open_directory(dir);
    const std::vector<std::int64_t> shape{1, 2, 3};
    expect_error([&] { store.require("h.999.attn.c_attn.weight", shape); }, ErrorCode::kNotFound,
                 {dir.string(), "tensor 'h.999.attn.c_attn.weight' is missing"});
    EXPECT_EQ(store.find("h.999.attn.c_attn.weight"), nullptr);

    const TensorView& wte = *store.find("wte.weight");
    expect_error([&] { store.require("wte.weight", shape); }, ErrorCode::kCorruptData,
                 {wte.file, "'" + wte.name + "'", format_shape(wte.shape), "expected [1, 2, 3]"});
}

// A copy of a fixture folder with its largest weights file cut in half.
TEST(WeightStoreDamaged, TruncatedFile) {
    ScratchDir scratch;
    const fs::path source = testing::model_dirs().front();
    fs::path largest;
    for (const auto& entry : fs::directory_iterator(source)) {
        fs::copy_file(entry.path(), scratch.path() / entry.path().filename());
        if (entry.path().extension() == ".safetensors" &&
            (largest.empty() || entry.file_size() > fs::file_size(largest))) {
            largest = entry.path();
        }
    }
    ASSERT_FALSE(largest.empty());
    const fs::path damaged = scratch.path() / largest.filename();
    const auto raw = read_raw(damaged);
    const auto full_size = fs::file_size(damaged);
    fs::resize_file(damaged, full_size / 2);

    const Error error =
        testing::capture_error([&] { WeightStore::open_directory(scratch.path()); });
    EXPECT_EQ(error.code(), ErrorCode::kCorruptData) << error.what();
    const std::string message = error.what();
    EXPECT_NE(message.find(damaged.string()), std::string::npos) << message;
    // The tensor it names really does end past the cut.
    const std::string marker = "tensor '";
    const auto name_start = message.find(marker);
    ASSERT_NE(name_start, std::string::npos) << message;
    const auto name_end = message.find('\'', name_start + marker.size());
    const std::string named =
        message.substr(name_start + marker.size(), name_end - name_start - marker.size());
    ASSERT_TRUE(raw.contains(named)) << message;
    EXPECT_GT(raw.at(named).end_in_file, full_size / 2) << message;
}

// Synthetic shards: "first" holds transformer.wte.weight and transformer.h.0.ln_1.weight,
// "second" holds lm_head.weight.
class ShardedDirectory : public ::testing::Test {
  protected:
    void SetUp() override {
        testing::write_bytes(
            dir() / "first.safetensors",
            testing::make_safetensors(
                R"({"transformer.wte.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                    "transformer.h.0.ln_1.weight": {"dtype": "F16", "shape": [2], "data_offsets": [16, 20]}})",
                20));
        testing::write_bytes(
            dir() / "second.safetensors",
            testing::make_safetensors(
                R"({"lm_head.weight": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}})",
                8));
    }
    const fs::path& dir() const { return scratch_.path(); }
    fs::path index_path() const { return dir() / "model.safetensors.index.json"; }
    void write_index(const json& weight_map) const {
        testing::write_text(
            index_path(),
            json{{"metadata", {{"total_size", 28}}}, {"weight_map", weight_map}}.dump());
    }
    static json valid_map() {
        return {{"transformer.wte.weight", "first.safetensors"},
                {"transformer.h.0.ln_1.weight", "first.safetensors"},
                {"lm_head.weight", "second.safetensors"}};
    }

  private:
    ScratchDir scratch_;
};

TEST_F(ShardedDirectory, ResolvesEveryShard) {
    write_index(valid_map());
    const WeightStore store = WeightStore::open_directory(dir());
    EXPECT_EQ(store.names(),
              (std::vector<std::string>{"h.0.ln_1.weight", "lm_head.weight", "wte.weight"}));
    EXPECT_EQ(store.total_bytes(), 28u);
    EXPECT_EQ(store.find("wte.weight")->file, (dir() / "first.safetensors").string());
    EXPECT_EQ(store.find("lm_head.weight")->file, (dir() / "second.safetensors").string());
    EXPECT_EQ(store.find("lm_head.weight")->dtype, DType::kBF16);
    EXPECT_EQ(static_cast<int>(store.find("h.0.ln_1.weight")->data[0]), 16);
    EXPECT_EQ(store.find("transformer.wte.weight"), nullptr);  // only normalised names
}

TEST_F(ShardedDirectory, SingleFileWinsOverTheIndex) {
    write_index(valid_map());
    fs::copy_file(dir() / "second.safetensors", dir() / "model.safetensors");
    EXPECT_EQ(WeightStore::open_directory(dir()).names(),
              std::vector<std::string>{"lm_head.weight"});
}

TEST_F(ShardedDirectory, IndexNamingAMissingShard) {
    json weight_map = valid_map();
    weight_map["lm_head.weight"] = "third.safetensors";
    write_index(weight_map);
    expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kNotFound,
                 {index_path().string(), "'third.safetensors'", "'lm_head.weight'"});
}

TEST_F(ShardedDirectory, IndexNamingATensorTheShardDoesNotHold) {
    json weight_map = valid_map();
    weight_map["transformer.h.0.ln_2.weight"] = "second.safetensors";
    write_index(weight_map);
    expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kCorruptData,
                 {index_path().string(), "'transformer.h.0.ln_2.weight'", "'second.safetensors'"});
}

TEST_F(ShardedDirectory, IndexPointingOutsideTheDirectory) {
    for (const std::string shard : {"../first.safetensors", "/etc/passwd", ""}) {
        SCOPED_TRACE(shard);
        json weight_map = valid_map();
        weight_map["lm_head.weight"] = shard;
        write_index(weight_map);
        expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kCorruptData,
                     {index_path().string(), "weight_map['lm_head.weight']", "inside the model"});
    }
}

TEST_F(ShardedDirectory, MalformedIndex) {
    testing::write_text(index_path(), R"({"weight_map": )");
    expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kCorruptData,
                 {index_path().string(), "invalid JSON"});
    testing::write_text(index_path(), R"({"metadata": {}})");
    expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kCorruptData,
                 {index_path().string(), "'weight_map'"});
    write_index(json{{"lm_head.weight", 3}});
    expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kCorruptData,
                 {index_path().string(), "weight_map['lm_head.weight'] is 3"});
    write_index(json::object());
    expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kCorruptData,
                 {index_path().string(), "'weight_map'"});
}

TEST_F(ShardedDirectory, DuplicateNamesAfterNormalisation) {
    testing::write_bytes(
        dir() / "second.safetensors",
        testing::make_safetensors(
            R"({"wte.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})", 16));
    write_index({{"transformer.wte.weight", "first.safetensors"},
                 {"transformer.h.0.ln_1.weight", "first.safetensors"},
                 {"wte.weight", "second.safetensors"}});
    expect_error([&] { WeightStore::open_directory(dir()); }, ErrorCode::kCorruptData,
                 {"'wte.weight' appears twice", "'transformer.wte.weight'", "first.safetensors",
                  "second.safetensors"});
}

TEST(WeightStoreDamaged, DirectoryWithoutWeights) {
    ScratchDir scratch;
    testing::write_text(scratch.path() / "config.json", "{}");
    expect_error([&] { WeightStore::open_directory(scratch.path()); }, ErrorCode::kNotFound,
                 {scratch.path().string(), "model.safetensors", "model.safetensors.index.json"});
    expect_error([&] { WeightStore::open_directory(scratch.path() / "absent"); },
                 ErrorCode::kNotFound, {(scratch.path() / "absent").string()});
}

TEST(WeightStoreAddFile, AddsViewsAndRejectsBadOnesWithoutChangingTheStore) {
    ScratchDir scratch;
    const fs::path path = scratch.path() / "weights.bin";
    testing::write_bytes(path, testing::make_safetensors("", 64));  // 8 + 64 bytes
    WeightStore store(scratch.path());

    auto mapped = MappedFile::open(path);
    const auto bytes = mapped.bytes();
    std::vector<TensorView> views{
        {"transformer.wpe.weight", DType::kF32, {2, 4}, bytes.subspan(8, 32), path.string()},
        {"ln_f.bias", DType::kF16, {4}, bytes.subspan(40, 8), path.string()}};
    store.add_file(std::move(mapped), views);
    EXPECT_EQ(store.names(), (std::vector<std::string>{"ln_f.bias", "wpe.weight"}));
    EXPECT_EQ(store.total_bytes(), 40u);
    EXPECT_EQ(store.find("wpe.weight")->data.data(), bytes.data() + 8);  // still mapped

    auto second = MappedFile::open(path);
    const auto second_bytes = second.bytes();
    const std::vector<TensorView> duplicate{
        {"h.0.ln_1.weight", DType::kF32, {1}, second_bytes.subspan(8, 4), path.string()},
        {"wpe.weight", DType::kF32, {1}, second_bytes.subspan(12, 4), path.string()}};
    expect_error([&] { store.add_file(std::move(second), duplicate); }, ErrorCode::kCorruptData,
                 {"'wpe.weight' appears twice"});
    EXPECT_EQ(store.find("h.0.ln_1.weight"), nullptr);

    const std::vector<std::byte> elsewhere(16);
    const std::vector<TensorView> outside{
        {"h.1.ln_1.weight", DType::kF32, {4}, std::span(elsewhere), path.string()}};
    expect_error([&] { store.add_file(MappedFile::open(path), outside); }, ErrorCode::kInternal,
                 {"'h.1.ln_1.weight'", "outside"});
    auto third = MappedFile::open(path);
    const std::vector<TensorView> wrong_size{
        {"h.1.ln_1.weight", DType::kF32, {3}, third.bytes().subspan(8, 16), path.string()}};
    expect_error([&] { store.add_file(std::move(third), wrong_size); }, ErrorCode::kInternal,
                 {"'h.1.ln_1.weight'", "[3]", "16 bytes"});
    EXPECT_EQ(store.names().size(), 2u);
    EXPECT_EQ(store.total_bytes(), 40u);
}

}  // namespace
}  // namespace llmserve::io
