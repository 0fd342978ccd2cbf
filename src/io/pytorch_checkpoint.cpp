#include "io/pytorch_checkpoint.h"

#include "common/error.h"
#include "io/json_util.h"
#include "io/pickle.h"
#include "io/zip_reader.h"

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

namespace llmserve::io {
namespace {

namespace fs = std::filesystem;
using pickle::Kind;
using pickle::Unpickler;
using pickle::Value;

// What a kObject value made by CheckpointHooks stands for; Value::ref indexes the matching table.
enum class Tag : std::int64_t {
    kOrderedDict,
    kRebuildTensorV2,
    kRebuildParameter,
    kRebuildParameterWithState,
    kStorageType,  // ref: index into kStorageTypes
    kStorage,      // ref: index into CheckpointHooks::storages_
    kTensor,       // ref: index into CheckpointHooks::tensors_
};

// What a tensor of a storage type becomes: a view, an error, or nothing.
enum class Support { kView, kRefuse, kSkip };

struct StorageType {
    std::string_view name;  // torch.<name>
    std::size_t element_size;
    Support support;
    DType dtype;  // for kView
};

constexpr std::array<StorageType, 10> kStorageTypes{{
    {"FloatStorage", 4, Support::kView, DType::kF32},
    {"HalfStorage", 2, Support::kView, DType::kF16},
    {"BFloat16Storage", 2, Support::kView, DType::kBF16},
    {"DoubleStorage", 8, Support::kRefuse, DType::kF32},
    {"LongStorage", 8, Support::kSkip, DType::kF32},
    {"IntStorage", 4, Support::kSkip, DType::kF32},
    {"ShortStorage", 2, Support::kSkip, DType::kF32},
    {"CharStorage", 1, Support::kSkip, DType::kF32},
    {"ByteStorage", 1, Support::kSkip, DType::kF32},
    {"BoolStorage", 1, Support::kSkip, DType::kF32},
}};

struct Storage {
    std::string key;
    std::size_t type;  // index into kStorageTypes
    std::uint64_t numel;
    std::span<const std::byte> bytes;  // numel * element_size bytes of the archive
};

struct Tensor {
    std::uint32_t storage;
    std::int64_t offset;  // in elements
    std::vector<std::int64_t> shape;
    std::vector<std::int64_t> stride;
};

Value object(Tag tag, std::size_t index = 0) {
    return {.kind = Kind::kObject,
            .number = static_cast<std::int64_t>(tag),
            .ref = static_cast<std::uint32_t>(index)};
}

bool is(const Value& value, Tag tag) {
    return value.kind == Kind::kObject && value.number == static_cast<std::int64_t>(tag);
}

// Gives the pickle's references their state-dict meaning and refuses everything else.
class CheckpointHooks final : public pickle::Hooks {
  public:
    CheckpointHooks(const ZipArchive& archive, std::string storage_prefix, std::string source)
        : archive_(archive),
          storage_prefix_(std::move(storage_prefix)),
          source_(std::move(source)) {}

    Value find_class(Unpickler&, std::string_view module, std::string_view name) override {
        if (module == "collections" && name == "OrderedDict") return object(Tag::kOrderedDict);
        if (module == "torch._utils") {
            if (name == "_rebuild_tensor_v2") return object(Tag::kRebuildTensorV2);
            if (name == "_rebuild_parameter") return object(Tag::kRebuildParameter);
            if (name == "_rebuild_parameter_with_state") {
                return object(Tag::kRebuildParameterWithState);
            }
        }
        if (module == "torch") {
            for (std::size_t i = 0; i < kStorageTypes.size(); ++i) {
                if (kStorageTypes[i].name == name) return object(Tag::kStorageType, i);
            }
        }
        fail(ErrorCode::kUnsupported,
             "refusing to load {}: pickle references '{}.{}', which is not allowed in a "
             "checkpoint",
             source_, printable(module), printable(name));
    }

    Value reduce(Unpickler& machine, const Value& callable, const Value& args) override {
        const auto arguments = machine.items(args);
        if (is(callable, Tag::kOrderedDict)) {
            if (!arguments.empty()) refuse(machine, "OrderedDict() with arguments");
            return machine.new_dict();
        }
        if (is(callable, Tag::kRebuildTensorV2)) return rebuild_tensor(machine, arguments);
        if (is(callable, Tag::kRebuildParameter) || is(callable, Tag::kRebuildParameterWithState)) {
            // (tensor, requires_grad, backward_hooks[, state]): the parameter is its tensor.
            const std::size_t expected = is(callable, Tag::kRebuildParameter) ? 3 : 4;
            if (arguments.size() != expected || !is(arguments[0], Tag::kTensor)) {
                refuse(machine, "_rebuild_parameter with unexpected arguments");
            }
            expect_no_hooks(machine, arguments[2]);
            return arguments[0];
        }
        refuse(machine, fmt::format("a call of a {}", describe(callable)));
    }

    // OrderedDict.__reduce__ adds the dict's attributes (state_dict()._metadata) with BUILD;
    // they hold nothing we need.
    void build(Unpickler& machine, const Value& target, const Value&) override {
        if (target.kind != Kind::kDict) refuse(machine, "BUILD on something other than a dict");
    }

    // ('storage', torch.<T>Storage, key, location, numel): the archive entry data/<key>.
    Value persistent_load(Unpickler& machine, const Value& pid) override {
        const auto fields = machine.items(pid);
        if (pid.kind != Kind::kTuple || fields.size() != 5 || fields[0].kind != Kind::kString ||
            machine.text(fields[0]) != "storage" || !is(fields[1], Tag::kStorageType)) {
            refuse(machine,
                   "a persistent id that is not a ('storage', type, key, location, "
                   "numel) record");
        }
        const std::string key(machine.text(fields[2]));
        const std::size_t type = fields[1].ref;
        const std::int64_t numel = machine.integer(fields[4]);
        if (const auto known = storage_by_key_.find(key); known != storage_by_key_.end()) {
            const Storage& storage = storages_[known->second];
            if (storage.type != type || storage.numel != static_cast<std::uint64_t>(numel)) {
                fail(ErrorCode::kCorruptData,
                     "{}: storage '{}' is described twice with different types or sizes", source_,
                     printable(key));
            }
            return object(Tag::kStorage, known->second);
        }

        const std::string entry_name = storage_prefix_ + key;
        const ZipEntry* entry = archive_.find(entry_name);
        if (entry == nullptr) {
            fail(ErrorCode::kCorruptData,
                 "{}: the pickle refers to storage '{}' but the archive "
                 "has no entry '{}'",
                 source_, printable(key), printable(entry_name));
        }
        const std::size_t element_size = kStorageTypes[type].element_size;
        if (numel < 0 || static_cast<std::uint64_t>(numel) > entry->data.size() / element_size) {
            fail(ErrorCode::kCorruptData,
                 "{}: storage '{}' claims {} elements of {} bytes but its entry holds {} bytes",
                 source_, printable(key), numel, element_size, entry->data.size());
        }
        storages_.push_back({key, type, static_cast<std::uint64_t>(numel),
                             entry->data.first(static_cast<std::size_t>(numel) * element_size)});
        storage_by_key_.emplace(key, storages_.size() - 1);
        return object(Tag::kStorage, storages_.size() - 1);
    }

    // The state dict the pickle produced, turned into views (or errors naming the tensor).
    PytorchCheckpoint collect(const Unpickler& machine, const Value& result) const {
        if (result.kind != Kind::kDict) {
            fail(ErrorCode::kUnsupported, "{}: the checkpoint holds a {}, not a state dict",
                 source_, Unpickler::kind_name(result.kind));
        }
        PytorchCheckpoint checkpoint;
        std::set<std::string_view> names;
        const auto items = machine.dict_items(result);
        for (std::size_t i = 0; i < items.size(); i += 2) {
            if (items[i].kind != Kind::kString) {
                fail(ErrorCode::kUnsupported, "{}: the state dict has a {} key, expected names",
                     source_, Unpickler::kind_name(items[i].kind));
            }
            const std::string_view name = machine.text(items[i]);
            if (!names.insert(name).second) {
                fail(ErrorCode::kCorruptData, "{}: tensor '{}' appears twice", source_,
                     printable(name));
            }
            if (!is(items[i + 1], Tag::kTensor)) {
                fail(ErrorCode::kUnsupported, "{}: state dict entry '{}' is a {}, not a tensor",
                     source_, printable(name), describe(items[i + 1]));
            }
            const Tensor& tensor = tensors_[items[i + 1].ref];
            const Storage& storage = storages_[tensor.storage];
            const StorageType& type = kStorageTypes[storage.type];
            if (type.support == Support::kSkip) {
                checkpoint.skipped.emplace_back(name);
                continue;
            }
            if (type.support == Support::kRefuse) {
                fail(ErrorCode::kUnsupported,
                     "{}: tensor '{}' is stored as torch.{}; only float32, float16 and bfloat16 "
                     "weights are supported",
                     source_, printable(name), type.name);
            }
            checkpoint.tensors.push_back(make_view(std::string(name), tensor, storage, type));
        }
        return checkpoint;
    }

  private:
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    Value rebuild_tensor(Unpickler& machine, std::span<const Value> arguments) {
        if ((arguments.size() != 6 && arguments.size() != 7) || !is(arguments[0], Tag::kStorage)) {
            refuse(machine, "_rebuild_tensor_v2 with unexpected arguments");
        }
        Tensor tensor{arguments[0].ref, machine.integer(arguments[1]),
                      integers(machine, arguments[2]), integers(machine, arguments[3])};
        machine.boolean(arguments[4]);
        expect_no_hooks(machine, arguments[5]);
        if (tensor.shape.size() != tensor.stride.size()) {
            fail(ErrorCode::kCorruptData, "{}: a tensor has {} sizes but {} strides", source_,
                 tensor.shape.size(), tensor.stride.size());
        }
        tensors_.push_back(std::move(tensor));
        return object(Tag::kTensor, tensors_.size() - 1);
    }

    TensorView make_view(std::string name, const Tensor& tensor, const Storage& storage,
                         const StorageType& type) const {
        const auto byte_count = tensor_byte_count(tensor.shape, type.dtype);
        if (!byte_count || tensor.offset < 0) {
            fail(ErrorCode::kCorruptData, "{}: tensor '{}' has an invalid shape {} or offset {}",
                 source_, printable(name), format_shape(tensor.shape), tensor.offset);
        }
        if (*byte_count > 0 && !is_contiguous(tensor)) {
            fail(ErrorCode::kUnsupported,
                 "{}: tensor '{}' is not contiguous (shape {}, strides {}); re-save it after "
                 ".contiguous()",
                 source_, printable(name), format_shape(tensor.shape), format_shape(tensor.stride));
        }
        const std::uint64_t numel = *byte_count / type.element_size;
        const auto offset = static_cast<std::uint64_t>(tensor.offset);
        if (offset > storage.numel || numel > storage.numel - offset) {
            fail(ErrorCode::kCorruptData,
                 "{}: tensor '{}' (shape {}) needs elements [{}, {}) of storage '{}', which holds "
                 "{}",
                 source_, printable(name), format_shape(tensor.shape), offset, offset + numel,
                 printable(storage.key), storage.numel);
        }
        return {.name = std::move(name),
                .dtype = type.dtype,
                .shape = tensor.shape,
                .data = storage.bytes.subspan(offset * type.element_size, *byte_count),
                .file = source_};
    }

    // Row-major with no gaps; a dimension of size 1 may carry any stride (PyTorch's rule).
    static bool is_contiguous(const Tensor& tensor) {
        std::int64_t expected = 1;
        for (std::size_t i = tensor.shape.size(); i-- > 0;) {
            if (tensor.shape[i] == 1) continue;
            if (tensor.stride[i] != expected) return false;
            expected *= tensor.shape[i];  // no overflow: tensor_byte_count checked the product
        }
        return true;
    }

    std::vector<std::int64_t> integers(const Unpickler& machine, const Value& tuple) const {
        std::vector<std::int64_t> values;
        for (const Value& item : machine.items(tuple)) values.push_back(machine.integer(item));
        return values;
    }

    // Backward hooks are functions; a checkpoint with any would need code we never run.
    void expect_no_hooks(const Unpickler& machine, const Value& hooks) const {
        if (hooks.kind != Kind::kDict || !machine.dict_items(hooks).empty()) {
            fail(ErrorCode::kUnsupported, "{}: a tensor carries backward hooks", source_);
        }
    }

    [[noreturn]] void refuse(const Unpickler&, std::string_view what) const {
        fail(ErrorCode::kUnsupported, "{}: the pickle contains {}, which a state dict does not",
             source_, what);
    }

    static std::string describe(const Value& value) {
        if (value.kind != Kind::kObject) return std::string(Unpickler::kind_name(value.kind));
        switch (static_cast<Tag>(value.number)) {
            case Tag::kOrderedDict:
                return "collections.OrderedDict";
            case Tag::kRebuildTensorV2:
                return "torch._utils._rebuild_tensor_v2";
            case Tag::kRebuildParameter:
                return "torch._utils._rebuild_parameter";
            case Tag::kRebuildParameterWithState:
                return "torch._utils._rebuild_parameter_with_state";
            case Tag::kStorageType:
                return fmt::format("torch.{}", kStorageTypes[value.ref].name);
            case Tag::kStorage:
                return "storage";
            case Tag::kTensor:
                return "tensor";
        }
        return "object";
    }

    // Names from a hostile file go into messages: keep them short and free of control bytes.
    static std::string printable(std::string_view text) {
        constexpr std::size_t kMaxShown = 200;
        std::string shown;
        for (const char c : text.substr(0, kMaxShown)) {
            const auto byte = static_cast<unsigned char>(c);
            shown += byte < 0x20 || byte == 0x7f ? '?' : c;
        }
        if (text.size() > kMaxShown) shown += "...";
        return shown;
    }

    const ZipArchive& archive_;
    std::string storage_prefix_;  // "<archive>/data/"
    std::string source_;
    std::vector<Storage> storages_;
    std::unordered_map<std::string, std::size_t> storage_by_key_;
    std::vector<Tensor> tensors_;
};

// The pre-1.6 format is a bare sequence of pickles (magic number, protocol, sys info, ...);
// even older checkpoints are tar archives.
bool looks_like_legacy(std::span<const std::byte> file) {
    constexpr std::size_t kTarMagicOffset = 257;
    constexpr std::string_view kTarMagic = "ustar";
    if (!file.empty() && std::to_integer<std::uint8_t>(file[0]) == 0x80) return true;
    return file.size() >= kTarMagicOffset + kTarMagic.size() &&
           std::string_view(reinterpret_cast<const char*>(file.data()) + kTarMagicOffset,
                            kTarMagic.size()) == kTarMagic;
}

std::string_view as_text(std::span<const std::byte> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

PytorchCheckpoint read_pytorch_checkpoint(std::span<const std::byte> file,
                                          const std::string& source) {
    if (!looks_like_zip(file)) {
        if (looks_like_legacy(file)) {
            fail(ErrorCode::kUnsupported,
                 "{} uses PyTorch's legacy (pre-1.6) serialization; re-save it with torch.save "
                 "or convert to safetensors",
                 source);
        }
        fail(ErrorCode::kCorruptData,
             "{} is not a PyTorch checkpoint: it is neither a zip archive (torch.save since 1.6) "
             "nor a legacy pickle",
             source);
    }
    const ZipArchive archive = ZipArchive::parse(file, source);
    // torch.save puts every record under one top-level folder named after the file.
    const std::string& first_name = archive.entries().empty() ? "" : archive.entries()[0].name;
    const std::size_t slash = first_name.find('/');
    if (slash == std::string::npos) {
        fail(ErrorCode::kCorruptData,
             "{}: the zip archive's entries are not in one folder, as torch.save writes them",
             source);
    }
    const std::string prefix = first_name.substr(0, slash + 1);
    const ZipEntry* pickle_entry = archive.find(prefix + "data.pkl");
    if (pickle_entry == nullptr) {
        fail(ErrorCode::kCorruptData, "{}: the zip archive has no '{}data.pkl'", source, prefix);
    }
    if (const ZipEntry* byteorder = archive.find(prefix + "byteorder");
        byteorder != nullptr && as_text(byteorder->data) != "little") {
        fail(ErrorCode::kUnsupported, "{}: the tensors are stored big-endian", source);
    }

    CheckpointHooks hooks(archive, prefix + "data/", source);
    Unpickler machine(pickle_entry->data, fmt::format("{} ({}data.pkl)", source, prefix), hooks);
    const Value result = machine.load();
    return hooks.collect(machine, result);
}

std::vector<TensorView> parse_pytorch_checkpoint(std::span<const std::byte> file,
                                                 const std::string& source) {
    return read_pytorch_checkpoint(file, source).tensors;
}

WeightStore open_pytorch_directory(const fs::path& dir) {
    std::error_code error;
    WeightStore store(dir);
    const fs::path single_path = dir / kPytorchWeightsName;
    if (fs::exists(single_path, error)) {
        MappedFile file = MappedFile::open(single_path);
        auto tensors = parse_pytorch_checkpoint(file.bytes(), single_path.string());
        store.add_file(std::move(file), std::move(tensors));
        return store;
    }

    const fs::path index_path = dir / kPytorchIndexName;
    if (!fs::exists(index_path, error)) {
        fail(ErrorCode::kNotFound, "{}: no PyTorch weights found (looked for {} and {})",
             dir.string(), kPytorchWeightsName, kPytorchIndexName);
    }
    const std::string index_source = index_path.string();
    const MappedFile index_file = MappedFile::open(index_path);
    const Json index = parse_json(as_text(index_file.bytes()), index_source);
    const auto weight_map = index.is_object() ? index.find("weight_map") : index.end();
    if (weight_map == index.end() || !weight_map->is_object() || weight_map->empty()) {
        fail(ErrorCode::kCorruptData,
             "{}: expected an object with a non-empty 'weight_map' of tensor -> file",
             index_source);
    }
    std::map<std::string, std::vector<std::string>> tensors_by_shard;
    for (const auto& [tensor, shard] : weight_map->items()) {
        const fs::path shard_path = shard.is_string() ? shard.get<std::string>() : "";
        const bool inside = !shard_path.empty() && !shard_path.has_root_path() &&
                            std::none_of(shard_path.begin(), shard_path.end(),
                                         [](const fs::path& part) { return part == ".."; });
        if (!inside) {
            fail(ErrorCode::kCorruptData,
                 "{}: weight_map['{}'] is {}, expected the name of a file inside the model "
                 "directory",
                 index_source, tensor, describe_json(shard));
        }
        tensors_by_shard[shard.get<std::string>()].push_back(tensor);
    }
    for (const auto& [shard_name, listed] : tensors_by_shard) {
        const fs::path shard_path = dir / shard_name;
        MappedFile file = MappedFile::open(shard_path);
        PytorchCheckpoint shard = read_pytorch_checkpoint(file.bytes(), shard_path.string());
        std::set<std::string_view> held(shard.skipped.begin(), shard.skipped.end());
        for (const TensorView& tensor : shard.tensors) held.insert(tensor.name);
        for (const std::string& tensor : listed) {
            if (!held.contains(tensor)) {
                fail(ErrorCode::kCorruptData,
                     "{}: tensor '{}' is mapped to shard '{}', which does not hold it",
                     index_source, tensor, shard_name);
            }
        }
        store.add_file(std::move(file), std::move(shard.tensors));
    }
    return store;
}

}  // namespace llmserve::io
