#include "io/weight_store.h"

#include "common/error.h"
#include "io/json_util.h"

#include <algorithm>
#include <functional>
#include <set>
#include <utility>

namespace llmserve::io {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSingleFileName = "model.safetensors";
constexpr std::string_view kIndexFileName = "model.safetensors.index.json";
// GPT2LMHeadModel saves the body under "transformer."; the published gpt2 checkpoints do not.
constexpr std::string_view kBodyPrefix = "transformer.";

std::string normalise(std::string_view name) {
    if (name.starts_with(kBodyPrefix)) name.remove_prefix(kBodyPrefix.size());
    return std::string(name);
}

std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A shard named by the index must be a file inside the model directory.
bool stays_inside_directory(const fs::path& relative) {
    if (relative.empty() || relative.has_root_path()) return false;
    return std::none_of(relative.begin(), relative.end(),
                        [](const fs::path& part) { return part == ".."; });
}

// shard file name -> the tensor names (as stored) the index maps to it.
std::map<std::string, std::vector<std::string>> read_index(const fs::path& index_path) {
    const std::string source = index_path.string();
    const MappedFile index_file = MappedFile::open(index_path);
    const Json index = parse_json(as_text(index_file.bytes()), source);
    if (!index.is_object()) {
        fail(ErrorCode::kCorruptData, "{}: is {}, expected a JSON object", source,
             describe_json(index));
    }
    const auto weight_map = index.find("weight_map");
    if (weight_map == index.end()) {
        fail(ErrorCode::kCorruptData, "{}: missing field 'weight_map'", source);
    }
    if (!weight_map->is_object() || weight_map->empty()) {
        fail(ErrorCode::kCorruptData,
             "{}: field 'weight_map' is {}, expected a non-empty object of tensor -> file", source,
             describe_json(*weight_map));
    }
    std::map<std::string, std::vector<std::string>> tensors_by_shard;
    for (const auto& [tensor, shard] : weight_map->items()) {
        if (!shard.is_string()) {
            fail(ErrorCode::kCorruptData, "{}: weight_map['{}'] is {}, expected a file name",
                 source, tensor, describe_json(shard));
        }
        const auto& shard_name = shard.get_ref<const std::string&>();
        if (!stays_inside_directory(fs::path(shard_name))) {
            fail(ErrorCode::kCorruptData,
                 "{}: weight_map['{}'] = '{}' is not a file inside the model directory", source,
                 tensor, shard_name);
        }
        tensors_by_shard[shard_name].push_back(tensor);
    }
    return tensors_by_shard;
}

}  // namespace

WeightStore WeightStore::open_directory(const fs::path& dir) {
    std::error_code error;
    if (!fs::is_directory(dir, error)) {
        fail(ErrorCode::kNotFound, "{}: not a directory (looking for model weights)", dir.string());
    }
    WeightStore store(dir);

    const fs::path single_path = dir / kSingleFileName;
    if (fs::exists(single_path, error)) {
        MappedFile file = MappedFile::open(single_path);
        auto tensors = parse_safetensors(file.bytes(), single_path.string());
        store.add_file(std::move(file), std::move(tensors));
        return store;
    }

    const fs::path index_path = dir / kIndexFileName;
    if (!fs::exists(index_path, error)) {
        fail(ErrorCode::kNotFound, "{}: no weights found (looked for {} and {})", dir.string(),
             kSingleFileName, kIndexFileName);
    }
    for (const auto& [shard_name, listed_tensors] : read_index(index_path)) {
        const fs::path shard_path = dir / shard_name;
        if (!fs::exists(shard_path, error)) {
            fail(ErrorCode::kNotFound, "{}: shard '{}' (holding tensor '{}') does not exist",
                 index_path.string(), shard_name, listed_tensors.front());
        }
        MappedFile file = MappedFile::open(shard_path);
        auto tensors = parse_safetensors(file.bytes(), shard_path.string());
        std::set<std::string_view> held;
        for (const TensorView& tensor : tensors) held.insert(tensor.name);
        for (const std::string& tensor : listed_tensors) {
            if (!held.contains(tensor)) {
                fail(ErrorCode::kCorruptData,
                     "{}: tensor '{}' is mapped to shard '{}', which does not hold it",
                     index_path.string(), tensor, shard_name);
            }
        }
        store.add_file(std::move(file), std::move(tensors));
    }
    return store;
}

const TensorView* WeightStore::find(std::string_view name) const {
    const auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& WeightStore::require(std::string_view name,
                                       std::span<const std::int64_t> expected_shape) const {
    const TensorView* tensor = find(name);
    if (tensor == nullptr) {
        fail(ErrorCode::kNotFound, "{}: tensor '{}' is missing", directory_.string(), name);
    }
    if (!std::ranges::equal(tensor->shape, expected_shape)) {
        fail(ErrorCode::kCorruptData, "{}: tensor '{}' has shape {}, expected {}", tensor->file,
             tensor->name, format_shape(tensor->shape), format_shape(expected_shape));
    }
    return *tensor;
}

std::vector<std::string> WeightStore::names() const {
    std::vector<std::string> result;
    result.reserve(tensors_.size());
    for (const auto& entry : tensors_) result.push_back(entry.first);
    return result;
}

std::size_t WeightStore::total_bytes() const {
    return total_bytes_;
}

void WeightStore::add_file(MappedFile file, std::vector<TensorView> tensors) {
    // Check everything before changing anything, so a failed call leaves the store as it was.
    const auto mapped = file.bytes();
    const auto* mapped_begin = mapped.data();
    const auto* mapped_end = mapped.data() + mapped.size();
    std::map<std::string, std::size_t, std::less<>> incoming;  // normalised name -> index
    std::size_t incoming_bytes = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const TensorView& tensor = tensors[i];
        const bool inside =
            tensor.data.empty() ||
            (std::less_equal<>()(mapped_begin, tensor.data.data()) &&
             std::less_equal<>()(tensor.data.data() + tensor.data.size(), mapped_end));
        if (!inside) {
            fail(ErrorCode::kInternal, "{}: tensor '{}' points outside the mapping of {}",
                 tensor.file, tensor.name, file.path().string());
        }
        if (tensor_byte_count(tensor.shape, tensor.dtype) != tensor.data.size()) {
            fail(ErrorCode::kInternal, "{}: tensor '{}' of shape {} and dtype {} holds {} bytes",
                 tensor.file, tensor.name, format_shape(tensor.shape), to_string(tensor.dtype),
                 tensor.data.size());
        }
        std::string name = normalise(tensor.name);
        const TensorView* earlier = find(name);
        if (const auto it = incoming.find(name); it != incoming.end())
            earlier = &tensors[it->second];
        if (earlier != nullptr) {
            fail(ErrorCode::kCorruptData,
                 "{}: tensor '{}' appears twice: as '{}' in {} and as '{}' in {}",
                 directory_.string(), name, earlier->name, earlier->file, tensor.name, tensor.file);
        }
        incoming.emplace(std::move(name), i);
        incoming_bytes += tensor.data.size();
    }

    for (auto& [name, index] : incoming) tensors_.emplace(name, std::move(tensors[index]));
    files_.push_back(std::move(file));
    total_bytes_ += incoming_bytes;
}

void WeightStore::add_owned(std::vector<std::byte> bytes, TensorView tensor) {
    if (tensor_byte_count(tensor.shape, tensor.dtype) != bytes.size())
        fail(ErrorCode::kInternal, "{}: tensor '{}' of shape {} and dtype {} holds {} bytes",
             tensor.file, tensor.name, format_shape(tensor.shape), to_string(tensor.dtype),
             bytes.size());
    std::string name = normalise(tensor.name);
    if (const TensorView* earlier = find(name))
        fail(ErrorCode::kCorruptData,
             "{}: tensor '{}' appears twice: as '{}' in {} and as '{}' in {}", directory_.string(),
             name, earlier->name, earlier->file, tensor.name, tensor.file);
    owned_.push_back(std::move(bytes));
    tensor.data = owned_.back();
    total_bytes_ += tensor.data.size();
    tensors_.emplace(std::move(name), std::move(tensor));
}

}  // namespace llmserve::io
