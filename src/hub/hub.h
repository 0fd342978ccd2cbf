// Models the way users name them: a local directory, or a Hugging Face Hub id ("gpt2",
// "openai-community/gpt2", "someone/model@revision") found in the Hugging Face cache or
// downloaded into it, in huggingface_hub's layout so that both tools share one cache:
//   <cache>/models--<org>--<name>/blobs/<etag>           file contents, by ETag
//   <cache>/models--<org>--<name>/snapshots/<commit>/<f>  relative symlinks into blobs/
//   <cache>/models--<org>--<name>/refs/<revision>         the commit a branch or tag points at
#pragma once

#include "hub/progress.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::hub {

struct HubOptions {
    std::string endpoint = "https://huggingface.co";      // no trailing slash
    std::optional<std::string> token;                     // sent as "Authorization: Bearer ..."
    std::filesystem::path cache_dir;                      // where downloads go (and are looked up)
    std::vector<std::filesystem::path> extra_cache_dirs;  // looked up too, never written
    bool offline = false;                                 // never touch the network
    int max_attempts = 3;  // per request; an interrupted transfer resumes where it stopped
    std::chrono::milliseconds retry_delay{1000};  // before the 2nd attempt; doubles after

    // HF_ENDPOINT; HF_TOKEN, else the token file `huggingface-cli login` writes
    // (HF_TOKEN_PATH, else $HF_HOME/token); HF_HUB_CACHE, else $HF_HOME/hub, else
    // $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub; HF_HUB_OFFLINE=1 (or
    // true/yes/on). extra_cache_dirs is left empty: the service adds its own CACHE_DIR.
    static HubOptions from_environment();
};

struct ModelRef {
    std::string repo_id;  // "gpt2" or "org/name"
    std::string revision = "main";
    // One GGUF file of the repository instead of a Hugging Face model folder: a quantization
    // tag ("Q4_K_M", matched against the repository's .gguf file names) or a file name ending
    // in ".gguf". Empty for a model folder.
    std::string gguf;

    // "name" or "org/name", then optionally ":<quant or file.gguf>", then optionally
    // "@revision". The id follows the Hub's rules: one or two parts of letters, digits, '-',
    // '_', '.', each at most 96 characters, starting and ending with a letter or digit, no "--"
    // or ".." (kInvalidArgument naming the value and the rule broken). A revision is a branch,
    // tag or commit: letters, digits, '-', '_', '.', '/', no "..". The GGUF selector: letters,
    // digits, '-', '_', '.', '/', no "..", not starting with '/'.
    static ModelRef parse(std::string_view text);
    // "org/name[:gguf]" then "@rev" when the revision is not "main".
    std::string to_string() const;
};

// A model directory's files that are missing: "config.json" and/or the weights (every shard an
// index lists, or a description of the accepted weight files when there are none). Empty when
// the directory can be loaded. Symlinks are followed, so a dangling cache link counts as missing.
std::vector<std::string> missing_model_files(const std::filesystem::path& dir);

// Turns a --model / MODEL_NAME value into a directory holding config.json, the weights and the
// tokenizer files the repository has, or into a GGUF file:
//  1. an existing local directory, as is (kNotFound listing what it lacks), or a local .gguf file;
//  2. a complete snapshot in cache_dir or one of extra_cache_dirs (no network at all); for
//     "org/name:Q4_K_M" the one cached .gguf file of that revision the tag selects;
//  3. unless offline, a download into cache_dir (see download_model).
// Errors name the model and what is missing: kInvalidArgument for a value that is neither a
// directory nor a valid id, kNotFound when offline and not cached (listing the files missing
// and the caches searched), and download_model's errors.
std::filesystem::path resolve_model(std::string_view name, const HubOptions& options,
                                    ProgressSink* progress = nullptr);

// Downloads what a model needs from <endpoint>/<repo>/resolve/<revision>/<file> into cache_dir
// and returns snapshots/<commit>. The commit comes from the X-Repo-Commit header of the first
// request; every later request is pinned to it. Files: config.json; generation_config.json,
// tokenizer.json, vocab.json, merges.txt, tokenizer_config.json when present; weights:
// model.safetensors, else model.safetensors.index.json and its shards, else pytorch_model.bin,
// else pytorch_model.bin.index.json and its shards. Blobs already cached are not fetched again;
// partial downloads (blobs/<etag>.incomplete) resume with an HTTP Range request; LFS files are
// checked against their SHA-256 ETag. A per-blob lock file makes concurrent downloads of one
// blob wait for each other. Errors: kPermissionDenied for 401/403 (telling the user to set
// HF_TOKEN or accept the model's terms), kNotFound for an unknown repo, revision or required
// file (naming it), kCorruptData for a size or SHA-256 mismatch (naming the file; the bad data
// is removed), kUnavailable for network failures and server errors (after max_attempts) and
// when offline, kResourceExhausted when the disk is full.
// With a GGUF selector (model.gguf) only that file is fetched and its path in the snapshot is
// returned. A quantization tag is looked up in the repository's file list
// (<endpoint>/api/models/<repo>/revision/<revision>): the .gguf files whose name holds the tag
// as a word ("model-Q4_K_M.gguf" for Q4_K_M, case-insensitive); none, several, or a file split
// into parts (-00001-of-0000N.gguf) is kNotFound / kInvalidArgument listing what there is.
std::filesystem::path download_model(const ModelRef& model, const HubOptions& options,
                                     ProgressSink* progress = nullptr);

struct CachedModel {
    std::string repo_id;
    std::vector<std::string> revisions;  // ref names ("main"), then commits no ref points at
    std::uintmax_t size_bytes = 0;       // complete blobs on disk
    std::filesystem::path path;          // <cache>/models--org--name
};

// Every model repository in cache_dir and extra_cache_dirs, sorted by repo_id then path.
std::vector<CachedModel> list_cached_models(const HubOptions& options);

}  // namespace llmserve::hub
