#include "hub/cache.h"

#include "common/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace llmserve::hub {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kRepoPrefix = "models--";

bool file_present(const fs::path& path) {
    std::error_code error;
    return fs::exists(path, error);  // follows symlinks: a dangling link is missing
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// A file named by an index must stay inside the model directory.
bool stays_inside(const fs::path& relative) {
    return !relative.empty() && !relative.has_root_path() &&
           std::none_of(relative.begin(), relative.end(),
                        [](const fs::path& part) { return part == ".."; });
}

// Sum of the complete blobs' sizes (partial downloads excluded).
std::uintmax_t blob_bytes(const fs::path& blobs) {
    std::uintmax_t total = 0;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(blobs, error)) {
        if (entry.is_regular_file(error) && entry.path().extension() != ".incomplete") {
            total += entry.file_size(error);
        }
    }
    return total;
}

}  // namespace

std::string repo_folder_name(std::string_view repo_id) {
    std::string name(kRepoPrefix);
    for (const char c : repo_id) {
        if (c == '/') {
            name += "--";
        } else {
            name += c;
        }
    }
    return name;
}

bool is_commit_hash(std::string_view revision) {
    return revision.size() == 40 && std::all_of(revision.begin(), revision.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

std::vector<std::string> read_index_shards(const fs::path& index_path) {
    const std::string source = index_path.string();
    nlohmann::json index;
    try {
        index = nlohmann::json::parse(read_text(index_path));
    } catch (const nlohmann::json::exception& error) {
        fail(ErrorCode::kCorruptData, "{}: not valid JSON: {}", source, error.what());
    }
    const auto weight_map = index.is_object() ? index.find("weight_map") : index.end();
    if (weight_map == index.end() || !weight_map->is_object() || weight_map->empty()) {
        fail(ErrorCode::kCorruptData,
             "{}: expected an object with a non-empty 'weight_map' of tensor -> file", source);
    }
    std::vector<std::string> shards;
    std::set<std::string> seen;
    for (const auto& [tensor, file] : weight_map->items()) {
        if (!file.is_string() || !stays_inside(fs::path(file.get<std::string>()))) {
            fail(ErrorCode::kCorruptData,
                 "{}: weight_map['{}'] must name a file inside the model directory", source,
                 tensor);
        }
        if (seen.insert(file.get<std::string>()).second) shards.push_back(file.get<std::string>());
    }
    return shards;
}

std::vector<std::string> missing_model_files(const fs::path& dir) {
    std::vector<std::string> missing;
    if (!file_present(dir / kConfigFile)) missing.emplace_back(kConfigFile);
    if (file_present(dir / kSafetensorsFile) || file_present(dir / kPytorchFile)) return missing;
    for (const char* index : {kSafetensorsIndex, kPytorchIndex}) {
        if (!file_present(dir / index)) continue;
        for (const std::string& shard : read_index_shards(dir / index)) {
            if (!file_present(dir / shard)) missing.push_back(shard);
        }
        return missing;
    }
    missing.push_back(fmt::format("weights ({}, {}, {} or {})", kSafetensorsFile, kSafetensorsIndex,
                                  kPytorchFile, kPytorchIndex));
    return missing;
}

std::optional<fs::path> cached_snapshot_dir(const fs::path& cache_root, const ModelRef& model) {
    const fs::path repo = cache_root / repo_folder_name(model.repo_id);
    std::string commit = model.revision;
    if (!is_commit_hash(commit)) {
        const fs::path ref = repo / "refs" / model.revision;
        if (!file_present(ref)) return std::nullopt;
        commit = read_text(ref);
        commit.erase(commit.find_last_not_of(" \t\r\n") + 1);
        if (!is_commit_hash(commit)) return std::nullopt;  // damaged ref: treat as not cached
    }
    const fs::path snapshot = repo / "snapshots" / commit;
    if (!file_present(snapshot)) return std::nullopt;
    return snapshot;
}

std::vector<std::string> matching_gguf_files(const std::vector<std::string>& files,
                                             std::string_view selector) {
    const auto lower = [](std::string_view text) {
        std::string lowered(text);
        std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return lowered;
    };
    const auto word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    const std::string tag = lower(selector);
    std::vector<std::string> matches;
    for (const std::string& file : files) {
        if (!file.ends_with(".gguf")) continue;
        if (tag.ends_with(".gguf")) {
            if (file == selector) matches.push_back(file);
            continue;
        }
        const std::string name = lower(fs::path(file).filename().string());
        for (auto at = name.find(tag); at != std::string::npos; at = name.find(tag, at + 1)) {
            const std::size_t end = at + tag.size();
            // A word: no letter or digit before it; no letter, digit or '_' after it (Q4_K is
            // not Q4_K_M).
            if ((at == 0 || !word_char(name[at - 1])) &&
                (end == name.size() || (!word_char(name[end]) && name[end] != '_'))) {
                matches.push_back(file);
                break;
            }
        }
    }
    return matches;
}

CacheLookup find_cached_snapshot(const fs::path& cache_root, const ModelRef& model) {
    const auto snapshot = cached_snapshot_dir(cache_root, model);
    if (!snapshot) return {};
    std::vector<std::string> missing = missing_model_files(*snapshot);
    if (missing.empty()) return {.snapshot = *snapshot};
    return {.incomplete_snapshot = *snapshot, .missing = std::move(missing)};
}

std::vector<CachedModel> list_cached_models(const HubOptions& options) {
    std::vector<fs::path> roots;
    if (!options.cache_dir.empty()) roots.push_back(options.cache_dir);
    roots.insert(roots.end(), options.extra_cache_dirs.begin(), options.extra_cache_dirs.end());

    std::vector<CachedModel> models;
    for (const fs::path& root : roots) {
        std::error_code error;
        for (const auto& entry : fs::directory_iterator(root, error)) {
            const std::string folder = entry.path().filename().string();
            if (!entry.is_directory(error) || !folder.starts_with(kRepoPrefix)) continue;
            CachedModel model;
            model.path = entry.path();
            // "models--org--name" -> "org/name" (ids cannot contain "--" themselves).
            model.repo_id = folder.substr(kRepoPrefix.size());
            if (const auto dashes = model.repo_id.find("--"); dashes != std::string::npos) {
                model.repo_id.replace(dashes, 2, "/");
            }

            std::set<std::string> referenced;
            const fs::path refs = entry.path() / "refs";
            for (auto it = fs::recursive_directory_iterator(refs, error);
                 it != fs::recursive_directory_iterator(); it.increment(error)) {
                if (!it->is_regular_file(error)) continue;
                model.revisions.push_back(fs::relative(it->path(), refs, error).generic_string());
                std::string commit = read_text(it->path());
                referenced.insert(commit.substr(0, commit.find_last_not_of(" \t\r\n") + 1));
            }
            std::sort(model.revisions.begin(), model.revisions.end());
            std::vector<std::string> unreferenced;
            for (const auto& snapshot : fs::directory_iterator(entry.path() / "snapshots", error)) {
                const std::string commit = snapshot.path().filename().string();
                if (!referenced.contains(commit)) unreferenced.push_back(commit);
            }
            std::sort(unreferenced.begin(), unreferenced.end());
            model.revisions.insert(model.revisions.end(), unreferenced.begin(), unreferenced.end());
            model.size_bytes = blob_bytes(entry.path() / "blobs");
            models.push_back(std::move(model));
        }
    }
    std::sort(models.begin(), models.end(), [](const CachedModel& a, const CachedModel& b) {
        return std::tie(a.repo_id, a.path) < std::tie(b.repo_id, b.path);
    });
    return models;
}

}  // namespace llmserve::hub
