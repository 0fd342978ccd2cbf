// pytorch_model.bin reading: the fixture checkpoints (discovered under models-bin/), the hostile
// ones, damaged archives, and synthetic archives that exercise each rule of the reader.
#include "io/pytorch_checkpoint.h"
#include "common/error.h"
#include "io/pickle.h"
#include "io/zip_reader.h"
#include "tests/common/expect_error.h"
#include "tests/common/scratch_dir.h"
#include "tests/common/test_paths.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace llmserve::io {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace std::string_literals;

using llmserve::testing::expect_error;
using llmserve::testing::fixtures_dir;
using llmserve::testing::ScratchDir;

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in) << "cannot open " << path;
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void write_file(const fs::path& path, std::string_view bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::span<const std::byte> as_bytes(std::string_view text) {
    return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

std::vector<fs::path> model_bin_dirs() {
    return llmserve::testing::subdirectories(fixtures_dir() / "models-bin");
}

std::vector<fs::path> bin_files(const fs::path& dir) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() == ".bin") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

// The standard CRC-32 (zip's), bit by bit: slow but obviously right, and independent of the
// reader under test.
std::uint32_t crc32(std::span<const std::byte> bytes) {
    std::uint32_t crc = 0xffffffffu;
    for (const std::byte b : bytes) {
        crc ^= std::to_integer<std::uint32_t>(b);
        for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

// ---------------------------------------------------------------------------------------------
// Fixture checkpoints

class ModelsBin : public ::testing::TestWithParam<fs::path> {};

std::vector<std::int64_t> dims(std::initializer_list<std::int64_t> values) {
    return values;
}

// Every tensor GPT-2's config implies, with its shape.
std::map<std::string, std::vector<std::int64_t>> expected_shapes(const Json& config) {
    const std::int64_t embd = config.at("n_embd");
    const std::int64_t vocab = config.at("vocab_size");
    const std::int64_t positions = config.at("n_positions");
    const std::int64_t layers = config.at("n_layer");
    const auto inner_field = config.find("n_inner");
    const std::int64_t inner = inner_field == config.end() || inner_field->is_null()
                                   ? 4 * embd
                                   : inner_field->get<std::int64_t>();
    std::map<std::string, std::vector<std::int64_t>> shapes{{"wte.weight", dims({vocab, embd})},
                                                            {"wpe.weight", dims({positions, embd})},
                                                            {"ln_f.weight", dims({embd})},
                                                            {"ln_f.bias", dims({embd})}};
    for (std::int64_t layer = 0; layer < layers; ++layer) {
        const std::string prefix = "h." + std::to_string(layer) + ".";
        shapes[prefix + "ln_1.weight"] = dims({embd});
        shapes[prefix + "ln_1.bias"] = dims({embd});
        shapes[prefix + "attn.c_attn.weight"] = dims({embd, 3 * embd});
        shapes[prefix + "attn.c_attn.bias"] = dims({3 * embd});
        shapes[prefix + "attn.c_proj.weight"] = dims({embd, embd});
        shapes[prefix + "attn.c_proj.bias"] = dims({embd});
        shapes[prefix + "ln_2.weight"] = dims({embd});
        shapes[prefix + "ln_2.bias"] = dims({embd});
        shapes[prefix + "mlp.c_fc.weight"] = dims({embd, inner});
        shapes[prefix + "mlp.c_fc.bias"] = dims({inner});
        shapes[prefix + "mlp.c_proj.weight"] = dims({inner, embd});
        shapes[prefix + "mlp.c_proj.bias"] = dims({embd});
    }
    return shapes;
}

TEST_P(ModelsBin, TensorsMatchTheConfig) {
    const fs::path dir = GetParam();
    const Json config = Json::parse(read_file(dir / "config.json"));
    const WeightStore store = open_pytorch_directory(dir);

    for (const auto& [name, shape] : expected_shapes(config)) {
        SCOPED_TRACE(name);
        const TensorView& tensor = store.require(name, shape);
        EXPECT_EQ(tensor.data.size(),
                  static_cast<std::size_t>(tensor.numel()) * dtype_size(tensor.dtype));
    }

    const TensorView& wte = *store.find("wte.weight");
    std::vector<float> values(static_cast<std::size_t>(wte.numel()));
    convert_to_f32(wte.dtype, wte.data.data(), values.size(), values.data());
    EXPECT_TRUE(
        std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); }));
    EXPECT_TRUE(std::any_of(values.begin(), values.end(), [](float v) { return v != 0.0f; }));
    // Random weights: the embedding rows differ from each other.
    const std::size_t embd = static_cast<std::size_t>(wte.shape[1]);
    EXPECT_FALSE(std::equal(values.begin(), values.begin() + embd, values.begin() + embd));
}

TEST_P(ModelsBin, IndexAgreesWithTheShards) {
    const fs::path index_path = GetParam() / kPytorchIndexName;
    if (!fs::exists(index_path)) GTEST_SKIP() << "single-file checkpoint";
    const Json index = Json::parse(read_file(index_path));
    const WeightStore store = open_pytorch_directory(GetParam());

    std::set<std::string> mapped_files;
    for (const auto& [tensor, file] : index.at("weight_map").items()) {
        mapped_files.insert(file.get<std::string>());
        const std::string name = tensor.starts_with("transformer.") ? tensor.substr(12) : tensor;
        const TensorView* view = store.find(name);
        ASSERT_NE(view, nullptr) << tensor;
        EXPECT_EQ(fs::path(view->file).filename(), file.get<std::string>()) << tensor;
    }
    EXPECT_EQ(store.names().size(), index.at("weight_map").size());
    EXPECT_GT(mapped_files.size(), 1u);
    if (index.contains("metadata") && index["metadata"].contains("total_size")) {
        EXPECT_EQ(store.total_bytes(), index["metadata"]["total_size"].get<std::size_t>());
    }
}

// Each tensor's bytes are exactly a storage record of the archive: its CRC-32 (computed here)
// equals the one the zip's writer recorded, so the views point at the right bytes.
TEST_P(ModelsBin, TensorBytesAreTheStoredRecords) {
    for (const fs::path& path : bin_files(GetParam())) {
        SCOPED_TRACE(path.string());
        const std::string bytes = read_file(path);
        const ZipArchive archive = ZipArchive::parse(as_bytes(bytes), path.string());
        const auto tensors = parse_pytorch_checkpoint(as_bytes(bytes), path.string());
        ASSERT_FALSE(tensors.empty());
        for (const TensorView& tensor : tensors) {
            SCOPED_TRACE(tensor.name);
            EXPECT_EQ(tensor.file, path.string());
            const auto holder = std::find_if(
                archive.entries().begin(), archive.entries().end(), [&](const ZipEntry& entry) {
                    return entry.name.find("/data/") != std::string::npos &&
                           tensor.data.data() >= entry.data.data() &&
                           tensor.data.data() + tensor.data.size() <=
                               entry.data.data() + entry.data.size();
                });
            ASSERT_NE(holder, archive.entries().end()) << "view outside every storage record";
            if (tensor.data.size() == holder->data.size()) {
                EXPECT_EQ(crc32(tensor.data), holder->crc32);
            }
        }
    }
}

std::string test_name(const ::testing::TestParamInfo<fs::path>& info) {
    std::string name = info.param.filename().string();
    for (char& c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    return name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelsBin, ::testing::ValuesIn(model_bin_dirs()), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ModelsBin);

// ---------------------------------------------------------------------------------------------
// Hostile files

// Walks a pickle accepting every reference without acting on any, and records what it names:
// how the test learns which global a hostile fixture smuggles in and what it would call it with.
class RecordingHooks : public pickle::Hooks {
  public:
    struct Call {
        std::string callable;
        std::vector<std::string> string_args;
    };
    pickle::Value find_class(pickle::Unpickler&, std::string_view module,
                             std::string_view name) override {
        globals.push_back(std::string(module) + "." + std::string(name));
        return {.kind = pickle::Kind::kObject,
                .ref = static_cast<std::uint32_t>(globals.size() - 1)};
    }
    pickle::Value reduce(pickle::Unpickler& machine, const pickle::Value& callable,
                         const pickle::Value& args) override {
        Call call{callable.kind == pickle::Kind::kObject ? globals[callable.ref] : "?", {}};
        for (const pickle::Value& arg : machine.items(args)) {
            if (arg.kind == pickle::Kind::kString) call.string_args.emplace_back(machine.text(arg));
        }
        calls.push_back(std::move(call));
        return machine.new_dict();
    }
    void build(pickle::Unpickler&, const pickle::Value&, const pickle::Value&) override {}
    pickle::Value persistent_load(pickle::Unpickler&, const pickle::Value&) override { return {}; }

    std::vector<std::string> globals;
    std::vector<Call> calls;
};

bool state_dict_global(std::string_view name) {
    return name == "collections.OrderedDict" || name.starts_with("torch._utils._rebuild_") ||
           (name.starts_with("torch.") && name.ends_with("Storage"));
}

TEST(Hostile, ForbiddenGlobalIsRefusedAndNothingRuns) {
    const fs::path path = fixtures_dir() / "hostile" / "pytorch_model.bin";
    const std::string bytes = read_file(path);

    // What the pickle asks for: a global outside the state-dict set, called with a shell command
    // that redirects into a file. That file must not appear.
    const ZipArchive archive = ZipArchive::parse(as_bytes(bytes), path.string());
    const auto pickle_entry =
        std::find_if(archive.entries().begin(), archive.entries().end(),
                     [](const ZipEntry& entry) { return entry.name.ends_with("/data.pkl"); });
    ASSERT_NE(pickle_entry, archive.entries().end());
    RecordingHooks recorder;
    pickle::Unpickler(pickle_entry->data, "hostile", recorder).load();
    const auto foreign =
        std::find_if(recorder.calls.begin(), recorder.calls.end(),
                     [](const auto& call) { return !state_dict_global(call.callable); });
    ASSERT_NE(foreign, recorder.calls.end()) << "the fixture should call a foreign global";
    ASSERT_EQ(foreign->string_args.size(), 1u);
    const std::string& command = foreign->string_args[0];
    EXPECT_NE(bytes.find(command), std::string::npos);  // plainly in the file
    const std::size_t redirect = command.rfind('>');
    ASSERT_NE(redirect, std::string::npos) << "command without a side effect to check: " << command;
    std::string target = command.substr(redirect + 1);
    target.erase(0, target.find_first_not_of(' '));
    target.erase(target.find_last_not_of(' ') + 1);
    std::error_code error;
    fs::remove(target, error);

    const std::string message = expect_error(
        ErrorCode::kUnsupported, [&] { parse_pytorch_checkpoint(as_bytes(bytes), path.string()); });
    EXPECT_NE(message.find("'" + foreign->callable + "'"), std::string::npos) << message;
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
    EXPECT_NE(message.find("not allowed"), std::string::npos) << message;
    EXPECT_FALSE(fs::exists(target)) << "the pickle's command ran: " << command;
}

TEST(Hostile, LegacyFormatGetsAClearError) {
    const fs::path path = fixtures_dir() / "hostile" / "legacy_format.bin";
    const std::string bytes = read_file(path);
    const std::string message = expect_error(
        ErrorCode::kUnsupported, [&] { parse_pytorch_checkpoint(as_bytes(bytes), path.string()); });
    EXPECT_NE(message.find("legacy (pre-1.6)"), std::string::npos) << message;
    EXPECT_NE(message.find("safetensors"), std::string::npos) << message;
    EXPECT_NE(message.find(path.string()), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// Damaged archives (the fixture checkpoints, cut and overwritten)

std::string first_fixture_bin() {
    for (const fs::path& dir : model_bin_dirs()) {
        for (const fs::path& file : bin_files(dir)) return read_file(file);
    }
    return {};
}

// Parses `bytes`, accepting success or llmserve::Error; anything else fails the test.
void parse_must_not_crash(const std::string& bytes) {
    try {
        parse_pytorch_checkpoint(as_bytes(bytes), "damaged.bin");
    } catch (const Error&) {
    }
}

TEST(Damaged, TruncatedArchivesGiveErrors) {
    const std::string bytes = first_fixture_bin();
    if (bytes.empty()) GTEST_SKIP() << "no models-bin fixture";
    std::vector<std::size_t> lengths;
    for (std::size_t n = 0; n < 64; ++n) lengths.push_back(n);
    for (std::size_t n = 64; n < bytes.size(); n += 4093) lengths.push_back(n);
    for (std::size_t n = bytes.size() - std::min<std::size_t>(bytes.size(), 200); n < bytes.size();
         ++n) {
        lengths.push_back(n);
    }
    for (const std::size_t length : lengths) {
        EXPECT_THROW(parse_pytorch_checkpoint(as_bytes(std::string_view(bytes).substr(0, length)),
                                              "truncated.bin"),
                     Error)
            << "length " << length;
    }
}

TEST(Damaged, OverwrittenDirectoryBytesNeverCrash) {
    const std::string bytes = first_fixture_bin();
    if (bytes.empty()) GTEST_SKIP() << "no models-bin fixture";
    const std::size_t eocd = bytes.rfind("PK\x05\x06");
    ASSERT_NE(eocd, std::string::npos);
    std::uint32_t directory_offset = 0;
    std::memcpy(&directory_offset, bytes.data() + eocd + 16, 4);
    // Bytes that hold signatures, sizes and offsets, set to values that break them: the first
    // local headers, the first central-directory entries, every 5th byte of the rest of the
    // directory, and all of the end records.
    const std::size_t end_records = bytes.rfind("PK\x06\x06");
    ASSERT_NE(end_records, std::string::npos);
    std::vector<std::size_t> positions;
    for (std::size_t pos = 0; pos < 160; ++pos) positions.push_back(pos);
    for (std::size_t pos = directory_offset; pos < end_records; ++pos) {
        if (pos < directory_offset + 256 || pos % 5 == 0) positions.push_back(pos);
    }
    for (std::size_t pos = end_records; pos < bytes.size(); ++pos) positions.push_back(pos);
    std::string damaged = bytes;
    for (const std::size_t pos : positions) {
        for (const char value : {'\x00', '\xff'}) {
            damaged[pos] = value;
            parse_must_not_crash(damaged);
        }
        damaged[pos] = bytes[pos];
    }
}

TEST(Damaged, DirectoryOffsetPastTheEnd) {
    std::string bytes = first_fixture_bin();
    if (bytes.empty()) GTEST_SKIP() << "no models-bin fixture";
    // Drop the zip64 records so that the 32-bit end record's offset is the one used.
    const std::size_t eocd = bytes.rfind("PK\x05\x06");
    const std::size_t zip64 = bytes.rfind("PK\x06\x06");
    ASSERT_NE(zip64, std::string::npos);
    std::string damaged = bytes.substr(0, zip64) + bytes.substr(eocd);
    const std::size_t new_eocd = damaged.rfind("PK\x05\x06");
    const std::uint32_t past_end = static_cast<std::uint32_t>(damaged.size() + 100);
    std::memcpy(damaged.data() + new_eocd + 16, &past_end, 4);
    const std::string message = expect_error(
        ErrorCode::kCorruptData, [&] { parse_pytorch_checkpoint(as_bytes(damaged), "moved.bin"); });
    EXPECT_NE(message.find("central directory"), std::string::npos) << message;
    EXPECT_NE(message.find("moved.bin"), std::string::npos) << message;
}

// ---------------------------------------------------------------------------------------------
// Synthetic archives: a small pickle writer and zip writer to build exactly the case under test.

class PickleWriter {
  public:
    PickleWriter& op(std::uint8_t code) {
        bytes_ += static_cast<char>(code);
        return *this;
    }
    PickleWriter& raw(std::string_view data) {
        bytes_ += data;
        return *this;
    }
    PickleWriter& u32(std::uint32_t value) {
        for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>((value >> (8 * i)) & 0xff);
        return *this;
    }
    PickleWriter& text(std::string_view value) {  // BINUNICODE
        op('X').u32(static_cast<std::uint32_t>(value.size()));
        return raw(value);
    }
    PickleWriter& integer(std::int64_t value) {
        if (value >= 0 && value < 256) return op('K').op(static_cast<std::uint8_t>(value));
        if (value >= 0 && value < 65536) {
            return op('M')
                .op(static_cast<std::uint8_t>(value & 0xff))
                .op(static_cast<std::uint8_t>(value >> 8));
        }
        op(0x8a).op(8);  // LONG1, 8 bytes
        for (int i = 0; i < 8; ++i)
            op(static_cast<std::uint8_t>((static_cast<std::uint64_t>(value) >> (8 * i)) & 0xff));
        return *this;
    }
    PickleWriter& global(std::string_view module, std::string_view name) {
        op('c').raw(module).raw("\n").raw(name);
        return raw("\n");
    }
    PickleWriter& int_tuple(const std::vector<std::int64_t>& values) {
        op('(');
        for (const std::int64_t v : values) integer(v);
        return op('t');
    }
    PickleWriter& empty_ordered_dict() {
        return global("collections", "OrderedDict").op(')').op('R');
    }
    const std::string& bytes() const { return bytes_; }

  private:
    std::string bytes_;
};

struct FakeTensor {
    std::string name;
    std::string key;  // storage record
    std::int64_t offset = 0;
    std::vector<std::int64_t> shape;
    std::vector<std::int64_t> stride;
};

struct FakeStorage {
    std::string type = "FloatStorage";
    std::int64_t numel = 0;
};

struct StateDictOptions {
    bool ordered_dict_with_metadata = false;  // what model.state_dict() pickles to
    bool as_parameters = false;               // wrapped in torch._utils._rebuild_parameter
};

// The pickle torch.save writes for a state dict of `tensors` over `storages` (key -> storage).
std::string state_dict_pickle(const std::vector<FakeTensor>& tensors,
                              const std::map<std::string, FakeStorage>& storages,
                              StateDictOptions options = {}) {
    PickleWriter p;
    p.op(0x80).op(2);
    if (options.ordered_dict_with_metadata) {
        p.empty_ordered_dict();
    } else {
        p.op('}');
    }
    p.op('(');
    for (const FakeTensor& tensor : tensors) {
        const FakeStorage& storage = storages.at(tensor.key);
        p.text(tensor.name);
        if (options.as_parameters) p.global("torch._utils", "_rebuild_parameter").op('(');
        p.global("torch._utils", "_rebuild_tensor_v2").op('(');
        p.op('(').text("storage").global("torch", storage.type).text(tensor.key).text("cpu");
        p.integer(storage.numel).op('t').op('Q');
        p.integer(tensor.offset).int_tuple(tensor.shape).int_tuple(tensor.stride);
        p.op(0x89).empty_ordered_dict().op('t').op('R');
        if (options.as_parameters) p.op(0x88).empty_ordered_dict().op('t').op('R');
    }
    p.op('u');
    if (options.ordered_dict_with_metadata) {  // {'_metadata': {'': {'version': 1}}}, BUILD
        p.op('}').text("_metadata").op('}').text("").op('}').text("version").integer(1);
        p.op('s').op('s').op('s').op('b');
    }
    return p.op('.').bytes();
}

struct ZipOptions {
    bool zip64_extras = false;     // sizes and offsets in zip64 extra fields
    std::uint16_t method = 0;      // for every entry
    std::uint16_t flags = 0x0808;  // data descriptor + UTF-8, as torch writes
};

void put_le(std::string& out, std::uint64_t value, int width) {
    for (int i = 0; i < width; ++i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

std::string make_zip(const std::vector<std::pair<std::string, std::string>>& entries,
                     ZipOptions options = {}) {
    std::string out;
    std::string directory;
    for (const auto& [name, data] : entries) {
        const std::uint64_t local_offset = out.size();
        const auto crc = crc32(as_bytes(data));
        put_le(out, 0x04034b50, 4);
        put_le(out, 45, 2);
        put_le(out, options.flags, 2);
        put_le(out, options.method, 2);
        put_le(out, 0, 4);  // time, date
        put_le(out, 0, 4);  // crc and sizes are in the data descriptor (zeros here)
        put_le(out, 0, 8);
        put_le(out, name.size(), 2);
        put_le(out, 0, 2);
        out += name;
        out += data;

        const bool extras = options.zip64_extras;
        put_le(directory, 0x02014b50, 4);
        put_le(directory, 45, 2);
        put_le(directory, 45, 2);
        put_le(directory, options.flags, 2);
        put_le(directory, options.method, 2);
        put_le(directory, 0, 4);
        put_le(directory, crc, 4);
        put_le(directory, extras ? 0xffffffff : data.size(), 4);
        put_le(directory, extras ? 0xffffffff : data.size(), 4);
        put_le(directory, name.size(), 2);
        put_le(directory, extras ? 28 : 0, 2);
        put_le(directory, 0, 2);  // comment
        put_le(directory, 0, 2);  // disk
        put_le(directory, 0, 2);
        put_le(directory, 0, 4);
        put_le(directory, extras ? 0xffffffff : local_offset, 4);
        directory += name;
        if (extras) {
            put_le(directory, 0x0001, 2);
            put_le(directory, 24, 2);
            put_le(directory, data.size(), 8);
            put_le(directory, data.size(), 8);
            put_le(directory, local_offset, 8);
        }
    }
    const std::uint64_t directory_offset = out.size();
    out += directory;
    const std::uint64_t zip64_offset = out.size();
    put_le(out, 0x06064b50, 4);
    put_le(out, 44, 8);
    put_le(out, 45, 2);
    put_le(out, 45, 2);
    put_le(out, 0, 8);  // disk numbers
    put_le(out, entries.size(), 8);
    put_le(out, entries.size(), 8);
    put_le(out, directory.size(), 8);
    put_le(out, directory_offset, 8);
    put_le(out, 0x07064b50, 4);
    put_le(out, 0, 4);
    put_le(out, zip64_offset, 8);
    put_le(out, 1, 4);
    put_le(out, 0x06054b50, 4);
    put_le(out, 0, 4);
    put_le(out, entries.size(), 2);
    put_le(out, entries.size(), 2);
    put_le(out, directory.size(), 4);
    put_le(out, directory_offset, 4);
    put_le(out, 0, 2);
    return out;
}

std::string floats(const std::vector<float>& values) {
    std::string bytes(values.size() * sizeof(float), '\0');
    std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
}

// A torch.save archive around `pickle` with one record per storage key.
std::string torch_archive(const std::string& pickle,
                          const std::map<std::string, std::string>& records,
                          ZipOptions options = {}, std::string byteorder = "little") {
    std::vector<std::pair<std::string, std::string>> entries{{"archive/data.pkl", pickle},
                                                             {"archive/byteorder", byteorder}};
    for (const auto& [key, data] : records) entries.emplace_back("archive/data/" + key, data);
    entries.emplace_back("archive/version", "3\n");
    return make_zip(entries, options);
}

std::vector<float> to_floats(const TensorView& tensor) {
    std::vector<float> values(static_cast<std::size_t>(tensor.numel()));
    convert_to_f32(tensor.dtype, tensor.data.data(), values.size(), values.data());
    return values;
}

const std::vector<float> kTen{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};

TEST(Synthetic, StorageOffsetsAndSharedStorages) {
    const std::map<std::string, FakeStorage> storages{{"0", {.numel = 10}}};
    const std::string archive =
        torch_archive(state_dict_pickle({{"window", "0", 2, {2, 3}, {3, 1}},
                                         {"wte.weight", "0", 0, {10}, {1}},
                                         {"lm_head.weight", "0", 0, {10}, {1}}},
                                        storages),
                      {{"0", floats(kTen)}});
    const auto tensors = parse_pytorch_checkpoint(as_bytes(archive), "tied.bin");
    ASSERT_EQ(tensors.size(), 3u);
    EXPECT_EQ(tensors[0].name, "window");
    EXPECT_EQ(tensors[0].shape, dims({2, 3}));
    EXPECT_EQ(to_floats(tensors[0]), (std::vector<float>{2, 3, 4, 5, 6, 7}));
    EXPECT_EQ(to_floats(tensors[1]), kTen);
    EXPECT_EQ(tensors[1].data.data(), tensors[2].data.data());  // tied: the same bytes
    EXPECT_EQ(tensors[2].file, "tied.bin");
}

TEST(Synthetic, StateDictAsModelsSaveIt) {
    // OrderedDict with _metadata set through BUILD, parameters, zip64 extra fields.
    const std::map<std::string, FakeStorage> storages{{"0", {.numel = 10}}};
    const std::string archive = torch_archive(
        state_dict_pickle({{"a", "0", 0, {2, 5}, {5, 1}}}, storages,
                          {.ordered_dict_with_metadata = true, .as_parameters = true}),
        {{"0", floats(kTen)}}, {.zip64_extras = true});
    const auto tensors = parse_pytorch_checkpoint(as_bytes(archive), "model.bin");
    ASSERT_EQ(tensors.size(), 1u);
    EXPECT_EQ(to_floats(tensors[0]), kTen);
}

TEST(Synthetic, HalfAndBFloat16Storages) {
    const std::map<std::string, FakeStorage> storages{{"h", {"HalfStorage", 2}},
                                                      {"b", {"BFloat16Storage", 2}}};
    // 1.5 and -2 in both encodings.
    const std::string half("\x00\x3e\x00\xc0", 4);
    const std::string bf16("\xc0\x3f\x00\xc0", 4);
    const std::string archive = torch_archive(
        state_dict_pickle({{"h", "h", 0, {2}, {1}}, {"b", "b", 0, {2}, {1}}}, storages),
        {{"h", half}, {"b", bf16}});
    const auto tensors = parse_pytorch_checkpoint(as_bytes(archive), "halves.bin");
    ASSERT_EQ(tensors.size(), 2u);
    EXPECT_EQ(tensors[0].dtype, DType::kF16);
    EXPECT_EQ(tensors[1].dtype, DType::kBF16);
    EXPECT_EQ(to_floats(tensors[0]), (std::vector<float>{1.5f, -2.0f}));
    EXPECT_EQ(to_floats(tensors[1]), (std::vector<float>{1.5f, -2.0f}));
}

TEST(Synthetic, IntegerBuffersAreSkippedAndDoublesRefused) {
    const std::map<std::string, FakeStorage> storages{
        {"0", {.numel = 10}}, {"mask", {"BoolStorage", 4}}, {"d", {"DoubleStorage", 1}}};
    const std::map<std::string, std::string> records{
        {"0", floats(kTen)}, {"mask", std::string(4, '\1')}, {"d", std::string(8, '\0')}};
    const std::string archive = torch_archive(
        state_dict_pickle({{"w", "0", 0, {10}, {1}}, {"h.0.attn.bias", "mask", 0, {2, 2}, {2, 1}}},
                          storages),
        records);
    const auto checkpoint = read_pytorch_checkpoint(as_bytes(archive), "mask.bin");
    ASSERT_EQ(checkpoint.tensors.size(), 1u);
    EXPECT_EQ(checkpoint.tensors[0].name, "w");
    EXPECT_EQ(checkpoint.skipped, std::vector<std::string>{"h.0.attn.bias"});

    const std::string message = expect_error(ErrorCode::kUnsupported, [&] {
        parse_pytorch_checkpoint(
            as_bytes(
                torch_archive(state_dict_pickle({{"scale", "d", 0, {1}, {1}}}, storages), records)),
            "double.bin");
    });
    EXPECT_NE(message.find("'scale'"), std::string::npos) << message;
    EXPECT_NE(message.find("DoubleStorage"), std::string::npos) << message;
}

TEST(Synthetic, NonContiguousStridesAreRefused) {
    const std::map<std::string, FakeStorage> storages{{"0", {.numel = 10}}};
    const std::string message = expect_error(ErrorCode::kUnsupported, [&] {
        parse_pytorch_checkpoint(
            as_bytes(
                torch_archive(state_dict_pickle({{"transposed", "0", 0, {2, 3}, {1, 2}}}, storages),
                              {{"0", floats(kTen)}})),
            "strided.bin");
    });
    EXPECT_NE(message.find("'transposed'"), std::string::npos) << message;
    EXPECT_NE(message.find("contiguous"), std::string::npos) << message;

    // A dimension of size 1 may carry any stride: still contiguous.
    const std::string row = torch_archive(
        state_dict_pickle({{"row", "0", 4, {1, 3}, {99, 1}}}, storages), {{"0", floats(kTen)}});
    const auto tensors = parse_pytorch_checkpoint(as_bytes(row), "row.bin");
    ASSERT_EQ(tensors.size(), 1u);
    EXPECT_EQ(to_floats(tensors[0]), (std::vector<float>{4, 5, 6}));
}

TEST(Synthetic, TensorsMustFitTheirStorage) {
    const std::map<std::string, FakeStorage> storages{{"0", {.numel = 10}}};
    const std::string message = expect_error(ErrorCode::kCorruptData, [&] {
        parse_pytorch_checkpoint(
            as_bytes(torch_archive(state_dict_pickle({{"tail", "0", 8, {5}, {1}}}, storages),
                                   {{"0", floats(kTen)}})),
            "tail.bin");
    });
    EXPECT_NE(message.find("'tail'"), std::string::npos) << message;

    // The storage claims more elements than its record holds.
    const std::map<std::string, FakeStorage> too_big{{"0", {.numel = 11}}};
    expect_error(ErrorCode::kCorruptData, [&] {
        parse_pytorch_checkpoint(
            as_bytes(torch_archive(state_dict_pickle({{"w", "0", 0, {10}, {1}}}, too_big),
                                   {{"0", floats(kTen)}})),
            "short.bin");
    });

    // The record is missing altogether.
    const std::string missing = expect_error(ErrorCode::kCorruptData, [&] {
        parse_pytorch_checkpoint(
            as_bytes(torch_archive(state_dict_pickle({{"w", "0", 0, {10}, {1}}}, storages), {})),
            "missing.bin");
    });
    EXPECT_NE(missing.find("archive/data/0"), std::string::npos) << missing;
}

TEST(Synthetic, ForbiddenGlobalsAreRefusedByName) {
    const std::vector<std::pair<std::string, std::string>> forbidden{
        {"posix", "system"},
        {"os", "system"},
        {"builtins", "eval"},
        {"__builtin__", "exec"},
        {"subprocess", "Popen"},
        {"torch", "load"},
        {"torch._utils", "_rebuild_device_tensor_from_numpy"},
        {"collections", "defaultdict"}};
    for (const auto& [module, name] : forbidden) {
        for (const bool stack_global : {false, true}) {
            PickleWriter p;
            p.op(0x80).op(2);
            if (stack_global) {
                p.text(module).text(name).op(0x93);
            } else {
                p.global(module, name);
            }
            p.text("id").op(0x85).op('R').op('.');
            const std::string message = expect_error(ErrorCode::kUnsupported, [&] {
                parse_pytorch_checkpoint(as_bytes(torch_archive(p.bytes(), {})), "evil.bin");
            });
            EXPECT_NE(message.find("refusing to load evil.bin: pickle references '" + module + "." +
                                   name + "', which is not allowed in a checkpoint"),
                      std::string::npos)
                << message;
        }
    }
}

TEST(Synthetic, ArchiveLevelRefusals) {
    const std::map<std::string, FakeStorage> storages{{"0", {.numel = 10}}};
    const std::string pickle = state_dict_pickle({{"w", "0", 0, {10}, {1}}}, storages);
    const std::map<std::string, std::string> records{{"0", floats(kTen)}};

    auto message = expect_error(ErrorCode::kUnsupported, [&] {
        parse_pytorch_checkpoint(as_bytes(torch_archive(pickle, records, {.method = 8})),
                                 "deflated.bin");
    });
    EXPECT_NE(message.find("compressed"), std::string::npos) << message;
    EXPECT_NE(message.find("archive/data.pkl"), std::string::npos) << message;

    message = expect_error(ErrorCode::kUnsupported, [&] {
        parse_pytorch_checkpoint(as_bytes(torch_archive(pickle, records, {}, "big")), "big.bin");
    });
    EXPECT_NE(message.find("big-endian"), std::string::npos) << message;

    message = expect_error(ErrorCode::kCorruptData, [&] {
        parse_pytorch_checkpoint(as_bytes(std::string("just some text, not a checkpoint")),
                                 "text.bin");
    });
    EXPECT_NE(message.find("text.bin"), std::string::npos) << message;
}

TEST(Synthetic, PicklesThatAreNotStateDicts) {
    const std::map<std::string, FakeStorage> storages{{"0", {.numel = 10}}};
    // A list at the top.
    expect_error(ErrorCode::kUnsupported, [&] {
        PickleWriter p;
        p.op(0x80).op(2).op(']').op('.');
        parse_pytorch_checkpoint(as_bytes(torch_archive(p.bytes(), {})), "list.bin");
    });
    // A value that is not a tensor.
    const std::string message = expect_error(ErrorCode::kUnsupported, [&] {
        PickleWriter p;
        p.op(0x80).op(2).op('}').text("step").integer(7).op('s').op('.');
        parse_pytorch_checkpoint(as_bytes(torch_archive(p.bytes(), {})), "step.bin");
    });
    EXPECT_NE(message.find("'step'"), std::string::npos) << message;
    // The same name twice.
    expect_error(ErrorCode::kCorruptData, [&] {
        parse_pytorch_checkpoint(
            as_bytes(torch_archive(
                state_dict_pickle({{"w", "0", 0, {10}, {1}}, {"w", "0", 0, {10}, {1}}}, storages),
                {{"0", floats(kTen)}})),
            "twice.bin");
    });
}

TEST(Synthetic, ProtocolFourFraming) {
    // FRAME, SHORT_BINUNICODE, STACK_GLOBAL and MEMOIZE, as protocol 4 writes a state dict.
    PickleWriter p;
    auto short_text = [&](std::string_view s) {
        p.op(0x8c).op(static_cast<std::uint8_t>(s.size())).raw(s).op(0x94);
    };
    p.op(0x80).op(4).op(0x95).raw(std::string(8, '\0')).op('}').op(0x94).op('(');
    short_text("w");
    short_text("torch._utils");
    short_text("_rebuild_tensor_v2");
    p.op(0x93).op(0x94).op('(').op('(');  // the arguments, then the persistent id
    short_text("storage");
    short_text("torch");
    short_text("FloatStorage");
    p.op(0x93).op(0x94);
    short_text("0");
    short_text("cpu");
    p.integer(10).op('t').op('Q').integer(0).int_tuple({10}).int_tuple({1}).op(0x89);
    short_text("collections");
    short_text("OrderedDict");
    p.op(0x93).op(')').op('R').op('t').op('R').op('u').op('.');
    const std::string archive = torch_archive(p.bytes(), {{"0", floats(kTen)}});
    const auto tensors = parse_pytorch_checkpoint(as_bytes(archive), "proto4.bin");
    ASSERT_EQ(tensors.size(), 1u);
    EXPECT_EQ(to_floats(tensors[0]), kTen);
}

// ---------------------------------------------------------------------------------------------
// The unpickler's own limits and checks, with small limits so that the tests stay fast.

class RefuseEverything : public pickle::Hooks {
  public:
    pickle::Value find_class(pickle::Unpickler&, std::string_view, std::string_view) override {
        fail(ErrorCode::kUnsupported, "no globals");
    }
    pickle::Value reduce(pickle::Unpickler&, const pickle::Value&, const pickle::Value&) override {
        fail(ErrorCode::kUnsupported, "no calls");
    }
};

ErrorCode run_pickle(const std::string& bytes, pickle::Limits limits = {}) {
    RefuseEverything hooks;
    pickle::Unpickler machine(as_bytes(bytes), "test.pkl", hooks, limits);
    try {
        machine.load();
    } catch (const Error& error) {
        return error.code();
    }
    return ErrorCode::kInternal;  // stands for "no error"
}

std::string repeated(std::string_view unit, std::size_t count) {
    std::string out;
    for (std::size_t i = 0; i < count; ++i) out += unit;
    return out;
}

TEST(Unpickler, LimitsAreEnforced) {
    EXPECT_EQ(run_pickle("\x80\x02" + repeated("(", 100) + "N.", {.max_marks = 50}),
              ErrorCode::kResourceExhausted);
    EXPECT_EQ(run_pickle("\x80\x02" + repeated("N", 100) + ".", {.max_stack = 50}),
              ErrorCode::kResourceExhausted);
    std::string puts = "\x80\x02N";
    for (int i = 0; i < 100; ++i) {  // BINPUT i
        puts += 'q';
        puts += static_cast<char>(i);
    }
    EXPECT_EQ(run_pickle(puts + ".", {.max_memo = 50}), ErrorCode::kResourceExhausted);
    // DUP + APPEND doubles nothing but still counts every item.
    EXPECT_EQ(run_pickle("\x80\x02]" + repeated("Na", 100) + ".", {.max_container_items = 50}),
              ErrorCode::kResourceExhausted);
    // Within the limits the same pickles run.
    EXPECT_EQ(run_pickle("\x80\x02" + repeated("(", 40) + "N."), ErrorCode::kInternal);
}

TEST(Unpickler, MalformedInputIsCorruptData) {
    EXPECT_EQ(run_pickle("\x80\x02"), ErrorCode::kCorruptData);  // no STOP
    EXPECT_EQ(run_pickle("\x80\x02X\x10\x00\x00\x00"s + "ab."),
              ErrorCode::kCorruptData);                                // short string
    EXPECT_EQ(run_pickle("\x80\x02h\x05."), ErrorCode::kCorruptData);  // memo read before write
    EXPECT_EQ(run_pickle("\x80\x02."), ErrorCode::kCorruptData);       // STOP on empty stack
    EXPECT_EQ(run_pickle("\x80\x02N(."), ErrorCode::kCorruptData);     // STOP below a MARK
    EXPECT_EQ(run_pickle("\x80\x02Nu."), ErrorCode::kCorruptData);     // SETITEMS, no MARK
    EXPECT_EQ(run_pickle("\x80\x02N(NNu."), ErrorCode::kCorruptData);  // SETITEMS on None
    EXPECT_EQ(run_pickle("\x80\x02"
                         "cos\nsystem"),
              ErrorCode::kCorruptData);                               // unterminated
    EXPECT_EQ(run_pickle("\x80\x02I1\n."), ErrorCode::kUnsupported);  // text opcode
    EXPECT_EQ(run_pickle("\x80\x02Nb."), ErrorCode::kCorruptData);    // BUILD, empty stack
    EXPECT_EQ(run_pickle("\x80\x02}Nb."), ErrorCode::kUnsupported);   // BUILD refused
    EXPECT_EQ(run_pickle("\x80\x02NQ."), ErrorCode::kUnsupported);    // BINPERSID refused
}

TEST(Unpickler, ValuesAndSharedContainers) {
    RefuseEverything hooks;
    // A list memoized and fetched back: items appended through the fetched copy show in the
    // original, which STOP returns (Python's reference semantics).
    PickleWriter p;
    p.op(0x80).op(2).op(']').op('q').op(0).op('h').op(0).op('(');
    p.op(0x8a).op(1).op(0xfe);  // LONG1 -2
    p.op('J').u32(70000).text("x").op(0x88).op('N').op('G').raw(
        std::string("\x3f\xf8\0\0\0\0\0\0", 8));
    p.op('e').op('0').op('.');  // APPENDS onto the fetched copy, pop it, STOP with the original
    pickle::Unpickler machine(as_bytes(p.bytes()), "values.pkl", hooks);
    const pickle::Value result = machine.load();
    const auto items = machine.items(result);
    ASSERT_EQ(items.size(), 6u);
    EXPECT_EQ(machine.integer(items[0]), -2);
    EXPECT_EQ(machine.integer(items[1]), 70000);
    EXPECT_EQ(machine.text(items[2]), "x");
    EXPECT_TRUE(machine.boolean(items[3]));
    EXPECT_EQ(items[4].kind, pickle::Kind::kNone);
    EXPECT_EQ(items[5].real, 1.5);
}

// ---------------------------------------------------------------------------------------------
// open_pytorch_directory's own checks, on temporary directories

TEST(OpenDirectory, ChecksTheIndex) {
    const std::map<std::string, FakeStorage> storages{{"0", {.numel = 10}}};
    const std::string shard = torch_archive(state_dict_pickle({{"w", "0", 0, {10}, {1}}}, storages),
                                            {{"0", floats(kTen)}});
    ScratchDir dir;
    write_file(dir.path() / "shard-1.bin", shard);

    write_file(dir.path() / kPytorchIndexName,
               R"({"weight_map": {"w": "shard-1.bin", "v": "shard-1.bin"}})");
    std::string message =
        expect_error(ErrorCode::kCorruptData, [&] { open_pytorch_directory(dir.path()); });
    EXPECT_NE(message.find("'v'"), std::string::npos) << message;

    write_file(dir.path() / kPytorchIndexName, R"({"weight_map": {"w": "../shard-1.bin"}})");
    message = expect_error(ErrorCode::kCorruptData, [&] { open_pytorch_directory(dir.path()); });
    EXPECT_NE(message.find("../shard-1.bin"), std::string::npos) << message;

    write_file(dir.path() / kPytorchIndexName, R"({"weight_map": {"w": "shard-2.bin"}})");
    expect_error(ErrorCode::kNotFound, [&] { open_pytorch_directory(dir.path()); });

    write_file(dir.path() / kPytorchIndexName, R"({"weight_map": {"w": "shard-1.bin"}})");
    const WeightStore store = open_pytorch_directory(dir.path());
    ASSERT_NE(store.find("w"), nullptr);
    EXPECT_EQ(to_floats(*store.find("w")), kTen);

    ScratchDir empty;
    message = expect_error(ErrorCode::kNotFound, [&] { open_pytorch_directory(empty.path()); });
    EXPECT_NE(message.find(empty.path().string()), std::string::npos) << message;
}

}  // namespace
}  // namespace llmserve::io
