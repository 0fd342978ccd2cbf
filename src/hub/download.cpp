// resolve_model and download_model: the Hub's resolve URLs into the Hugging Face cache.
#include "common/error.h"
#include "hub/cache.h"
#include "hub/http.h"
#include "hub/hub.h"
#include "hub/sha256.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace llmserve::hub {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kHashChunk = 1 << 20;

// Files a model may use besides its weights, fetched when the repository has them.
constexpr const char* kOptionalFiles[] = {"generation_config.json", "tokenizer.json", "vocab.json",
                                          "merges.txt", "tokenizer_config.json"};

// A GGUF repository's file list is JSON of a few KiB; a far larger answer is not one.
constexpr std::size_t kMaxFileListBytes = 16 << 20;

// "model-Q4_K_M-00001-of-00003.gguf": one part of a file split by llama-gguf-split.
bool is_split_part(const std::string& file) {
    static const std::regex part(R"(-\d{5}-of-\d{5}\.gguf$)");
    return std::regex_search(file, part);
}

// At most 10 names, comma-separated, then how many more there are.
std::string first_names(const std::vector<std::string>& names) {
    std::string text;
    for (std::size_t i = 0; i < names.size() && i < 10; ++i) text += (i ? ", " : "") + names[i];
    if (names.size() > 10) text += fmt::format(" and {} more", names.size() - 10);
    return text;
}

// The .gguf files among `files`.
std::vector<std::string> matching_gguf_files_all(const std::vector<std::string>& files) {
    std::vector<std::string> gguf;
    std::copy_if(files.begin(), files.end(), std::back_inserter(gguf),
                 [](const std::string& file) { return file.ends_with(".gguf"); });
    return gguf;
}

// A GET's body in memory, refused past `limit` bytes.
class TextSink final : public BodySink {
  public:
    TextSink(std::size_t limit, std::string url) : limit_(limit), url_(std::move(url)) {}
    void begin(const HttpResponse&) override { text_.clear(); }
    void write(std::span<const std::byte> bytes) override {
        if (text_.size() + bytes.size() > limit_) {
            fail(ErrorCode::kUnavailable, "{} sent more than {} bytes", url_, limit_);
        }
        text_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    const std::string& text() const { return text_; }

  private:
    std::size_t limit_;
    std::string url_;
    std::string text_;
};

// What a HEAD of a resolve URL says about one file.
struct FileInfo {
    std::string etag;                   // blob name; for LFS files the SHA-256 of the contents
    std::optional<std::uint64_t> size;  // bytes, when the server said
    bool sha256_etag = false;           // the etag is a SHA-256 we can check
};

// An open file descriptor, closed on scope exit.
class FileDescriptor {
  public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

  private:
    int fd_;
};

[[noreturn]] void fail_io(const fs::path& path, std::string_view action) {
    const int error = errno;
    fail(error == ENOSPC || error == EDQUOT  ? ErrorCode::kResourceExhausted
         : error == EACCES || error == EPERM ? ErrorCode::kPermissionDenied
                                             : ErrorCode::kUnavailable,
         "cannot {} {}: {}", action, path.string(), std::strerror(error));
}

void make_directories(const fs::path& dir) {
    std::error_code error;
    fs::create_directories(dir, error);
    if (error) {
        fail(ErrorCode::kUnavailable, "cannot create directory {}: {}", dir.string(),
             error.message());
    }
}

// The Hub quotes ETags and may mark them weak (W/"..."); the bare value names the blob.
std::string bare_etag(std::string etag) {
    if (etag.starts_with("W/")) etag.erase(0, 2);
    if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
        etag = etag.substr(1, etag.size() - 2);
    }
    return etag;
}

bool is_sha256(std::string_view text) {
    return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

// An ETag becomes a file name: only safe characters.
bool usable_as_file_name(std::string_view etag) {
    return !etag.empty() && etag != "." && etag != ".." && etag.size() <= 200 &&
           std::all_of(etag.begin(), etag.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                      c == '.';
           });
}

std::optional<std::uint64_t> header_number(const Headers& headers, const std::string& name) {
    const auto it = headers.find(name);
    if (it == headers.end()) return std::nullopt;
    try {
        std::size_t used = 0;
        const auto value = std::stoull(it->second, &used);
        if (used == it->second.size()) return value;
    } catch (const std::exception&) {
    }
    return std::nullopt;
}

std::string header(const Headers& headers, const std::string& name) {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
}

// A name for a temporary file next to `path`, distinct for every process and thread.
fs::path temporary_name(const fs::path& path) {
    return fmt::format("{}.tmp-{}-{}", path.string(), ::getpid(),
                       std::hash<std::thread::id>{}(std::this_thread::get_id()));
}

// Writes `text` to `path` atomically (temporary file + rename).
void write_atomically(const fs::path& path, std::string_view text) {
    make_directories(path.parent_path());
    const fs::path temporary = temporary_name(path);
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        if (!out.flush()) fail_io(temporary, "write");
    }
    std::error_code error;
    fs::rename(temporary, path, error);
    if (error) fail(ErrorCode::kUnavailable, "cannot write {}: {}", path.string(), error.message());
}

// Points `link` at `target` (relative), replacing whatever is there, atomically.
void place_symlink(const fs::path& target, const fs::path& link) {
    make_directories(link.parent_path());
    const fs::path temporary = temporary_name(link);
    std::error_code error;
    fs::remove(temporary, error);
    fs::create_symlink(target, temporary, error);
    if (!error) fs::rename(temporary, link, error);
    if (error) {
        fail(ErrorCode::kUnavailable, "cannot link {} to {}: {}", link.string(), target.string(),
             error.message());
    }
}

// Holds an exclusive flock on a lock file while alive: one process per blob downloads it.
class BlobLock {
  public:
    explicit BlobLock(const fs::path& path) : fd_(open_lock(path)) {
        while (::flock(fd_.get(), LOCK_EX) != 0) {
            if (errno != EINTR) fail_io(path, "lock");
        }
    }  // closing the descriptor releases the lock

  private:
    static int open_lock(const fs::path& path) {
        make_directories(path.parent_path());
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) fail_io(path, "create lock file");
        return fd;
    }
    FileDescriptor fd_;
};

// Streams a GET body into blobs/<etag>.incomplete, appending to what is there (206) or
// starting over (200), hashing as it goes.
class BlobWriter final : public BodySink {
  public:
    BlobWriter(const fs::path& path, std::uint64_t have, bool hash, ProgressSink* progress,
               const std::string& file, std::optional<std::uint64_t> total)
        : path_(path), have_(have), hash_(hash), progress_(progress), file_(file), total_(total) {}

    void begin(const HttpResponse& response) override {
        status_ = response.status;
        if (status_ != 200 && status_ != 206) return;  // an error: the caller reads the status
        if (status_ == 206 && content_range_start(response) != have_) {
            std::error_code error;
            fs::remove(path_, error);  // the next attempt starts over
            fail(ErrorCode::kUnavailable,
                 "{}: the server resumed at the wrong offset (Content-Range '{}', expected {})",
                 response.url, header(response.headers, "content-range"), have_);
        }
        open(status_ == 200 ? 0 : have_);  // 200: the server ignored our Range, start over
    }

    // Continues the file after its first `keep` bytes (0: starts it over), ready for write().
    void open(std::uint64_t keep) {
        have_ = keep;
        fd_ = std::make_unique<FileDescriptor>(
            ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        if (fd_->get() < 0) fail_io(path_, "open");
        if (::ftruncate(fd_->get(), static_cast<off_t>(have_)) != 0 ||
            ::lseek(fd_->get(), static_cast<off_t>(have_), SEEK_SET) < 0) {
            fail_io(path_, "prepare");
        }
        if (hash_) hash_existing();
        if (progress_ != nullptr) progress_->start(file_, total_.value_or(0), have_);
        receiving_ = true;
    }

    void write(std::span<const std::byte> bytes) override {
        if (!receiving_) return;  // an error response's body
        for (std::size_t written = 0; written < bytes.size();) {
            const ssize_t n = ::write(fd_->get(), bytes.data() + written, bytes.size() - written);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail_io(path_, "write");
            written += static_cast<std::size_t>(n);
        }
        if (hash_) digest_.update(bytes);
        have_ += bytes.size();
        if (progress_ != nullptr) progress_->advance(have_);
    }

    bool receiving() const { return receiving_; }
    std::uint64_t have() const { return have_; }
    std::string hex_digest() { return digest_.hex_digest(); }

  private:
    static std::optional<std::uint64_t> content_range_start(const HttpResponse& response) {
        // "bytes <start>-<end>/<total>"
        const std::string range = header(response.headers, "content-range");
        if (!range.starts_with("bytes ")) return std::nullopt;
        try {
            return std::stoull(range.substr(6));
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }

    // A resumed download's digest must cover the bytes already on disk.
    void hash_existing() {
        std::ifstream in(path_, std::ios::binary);
        std::vector<char> chunk(kHashChunk);
        std::uint64_t left = have_;
        while (left > 0 && in) {
            in.read(chunk.data(),
                    static_cast<std::streamsize>(std::min<std::uint64_t>(left, chunk.size())));
            const auto got = static_cast<std::size_t>(in.gcount());
            digest_.update({reinterpret_cast<const std::byte*>(chunk.data()), got});
            left -= got;
        }
        if (left > 0) fail_io(path_, "read back");
    }

    fs::path path_;
    std::uint64_t have_;
    bool hash_;
    ProgressSink* progress_;
    std::string file_;
    std::optional<std::uint64_t> total_;
    long status_ = 0;
    bool receiving_ = false;
    std::unique_ptr<FileDescriptor> fd_;
    Sha256 digest_;
};

// One model download: the HEAD/GET conversation with the Hub and the cache writes.
class Downloader {
  public:
    Downloader(const ModelRef& model, const HubOptions& options, ProgressSink* progress)
        : model_(model),
          options_(options),
          progress_(progress),
          http_(options.endpoint, options.token),
          repo_dir_(options.cache_dir / repo_folder_name(model.repo_id)),
          locks_dir_(options.cache_dir / ".locks" / repo_folder_name(model.repo_id)) {}

    fs::path run() {
        if (!model_.gguf.empty()) return run_gguf();
        // The first request fixes the commit; every later one is pinned to it, so that a push
        // during the download cannot mix two versions.
        const auto config = head(kConfigFile, /*first=*/true);
        if (!config) {
            fail(ErrorCode::kNotFound, "model '{}' has no {} on {}", model_.to_string(),
                 kConfigFile, options_.endpoint);
        }
        fetch(kConfigFile, *config);
        for (const char* file : kOptionalFiles) {
            if (const auto info = head(file)) fetch(file, *info);
        }
        fetch_weights();

        // The ref last: a snapshot is only reachable by name once it is complete.
        if (model_.revision != commit_) {
            write_atomically(repo_dir_ / "refs" / model_.revision, commit_);
        }
        return snapshot_dir();
    }

  private:
    fs::path snapshot_dir() const { return repo_dir_ / "snapshots" / commit_; }

    // One GGUF file: the one the selector names, or the one its quantization tag picks from the
    // repository's file list (whose commit then pins the download).
    fs::path run_gguf() {
        const std::string file =
            model_.gguf.ends_with(".gguf") ? model_.gguf : choose_from_file_list();
        const auto info = head(file, /*first=*/commit_.empty());
        if (!info) {
            fail(ErrorCode::kNotFound, "model '{}': {} has no file '{}'", model_.to_string(),
                 options_.endpoint, file);
        }
        fetch(file, *info);
        if (model_.revision != commit_) {
            write_atomically(repo_dir_ / "refs" / model_.revision, commit_);
        }
        return snapshot_dir() / file;
    }

    std::string choose_from_file_list() {
        const std::string url = fmt::format("{}/api/models/{}/revision/{}", options_.endpoint,
                                            model_.repo_id, url_encode(model_.revision, false));
        TextSink body(kMaxFileListBytes, url);
        for (int attempt = 1;; ++attempt) {
            try {
                const HttpResponse response = http_.get(url, 0, body);
                if (response.status == 200) break;
                if (response.status < 500 || attempt >= options_.max_attempts) {
                    fail_for_status(response, "its file list");
                }
            } catch (const Error& failure) {
                if (failure.code() != ErrorCode::kUnavailable || attempt >= options_.max_attempts) {
                    throw;
                }
            }
            pause_before_retry(attempt);
        }
        std::vector<std::string> files;
        try {
            const auto listing = nlohmann::json::parse(body.text());
            commit_ = listing.at("sha").get<std::string>();
            for (const auto& sibling : listing.at("siblings")) {
                files.push_back(sibling.at("rfilename").get<std::string>());
            }
        } catch (const nlohmann::json::exception& error) {
            fail(ErrorCode::kUnavailable, "{} answered {} with an unexpected file list: {}",
                 options_.endpoint, url, error.what());
        }
        if (!is_commit_hash(commit_)) {
            fail(ErrorCode::kUnavailable, "{} gave no commit for '{}' in {}", options_.endpoint,
                 model_.to_string(), url);
        }
        return the_one_gguf_file(files);
    }

    std::string the_one_gguf_file(const std::vector<std::string>& files) const {
        const std::vector<std::string> matches = matching_gguf_files(files, model_.gguf);
        if (matches.size() == 1 && !is_split_part(matches.front())) return matches.front();
        if (matches.empty()) {
            const std::vector<std::string> all = matching_gguf_files_all(files);
            fail(ErrorCode::kNotFound, "model '{}': no .gguf file of {} on {} matches '{}' ({})",
                 model_.to_string(), model_.repo_id, options_.endpoint, model_.gguf,
                 all.empty() ? "it has no .gguf files" : "its .gguf files: " + first_names(all));
        }
        if (std::all_of(matches.begin(), matches.end(), is_split_part)) {
            fail(ErrorCode::kInvalidArgument,
                 "model '{}' is split into {} files ({}); llmserve reads a GGUF model from one "
                 "file: join the parts with llama.cpp's `llama-gguf-split --merge` and serve the "
                 "result",
                 model_.to_string(), matches.size(), first_names(matches));
        }
        fail(ErrorCode::kInvalidArgument,
             "model '{}': '{}' matches {} files ({}); name one as {}:<file>.gguf",
             model_.to_string(), model_.gguf, matches.size(), first_names(matches), model_.repo_id);
    }

    std::string resolve_url(const std::string& file) const {
        const std::string& revision = commit_.empty() ? model_.revision : commit_;
        return fmt::format("{}/{}/resolve/{}/{}", options_.endpoint, model_.repo_id,
                           url_encode(revision, false), url_encode(file, true));
    }

    void fetch_weights() {
        if (const auto info = head(kSafetensorsFile)) {
            fetch(kSafetensorsFile, *info);
        } else if (const auto index = head(kSafetensorsIndex)) {
            fetch_sharded(kSafetensorsIndex, *index);
        } else if (const auto bin = head(kPytorchFile)) {
            fetch(kPytorchFile, *bin);
        } else if (const auto bin_index = head(kPytorchIndex)) {
            fetch_sharded(kPytorchIndex, *bin_index);
        } else {
            fail(ErrorCode::kNotFound,
                 "model '{}' has no weights on {} (looked for {}, {}, {} and {})",
                 model_.to_string(), options_.endpoint, kSafetensorsFile, kSafetensorsIndex,
                 kPytorchFile, kPytorchIndex);
        }
    }

    void fetch_sharded(const std::string& index, const FileInfo& info) {
        fetch(index, info);
        for (const std::string& shard : read_index_shards(snapshot_dir() / index)) {
            const auto shard_info = head(shard);
            if (!shard_info) {
                fail(ErrorCode::kNotFound, "model '{}': {} lists '{}', which {} does not have",
                     model_.to_string(), index, shard, options_.endpoint);
            }
            fetch(shard, *shard_info);
        }
    }

    // HEAD of one file: its metadata, or nullopt when the repository does not have it.
    std::optional<FileInfo> head(const std::string& file, bool first = false) {
        const std::string url = resolve_url(file);
        const HttpResponse response = head_with_retries(url);
        const std::string error_code = header(response.headers, "x-error-code");
        if (response.status == 404 &&
            (error_code == "EntryNotFound" || (!first && error_code.empty()))) {
            return std::nullopt;
        }
        if (response.status != 200 && response.location.empty()) fail_for_status(response, file);

        if (first) {
            commit_ = header(response.headers, "x-repo-commit");
            if (commit_.empty() && is_commit_hash(model_.revision)) commit_ = model_.revision;
            if (!is_commit_hash(commit_)) {
                fail(ErrorCode::kUnavailable,
                     "{} did not say which commit '{}' is (no X-Repo-Commit header on {})",
                     options_.endpoint, model_.to_string(), url);
            }
        }
        FileInfo info;
        info.etag = bare_etag(header(response.headers, "x-linked-etag"));
        if (info.etag.empty()) info.etag = bare_etag(header(response.headers, "etag"));
        if (!usable_as_file_name(info.etag)) {
            fail(ErrorCode::kUnavailable, "{} sent no usable ETag for {} (got '{}')",
                 options_.endpoint, url, info.etag);
        }
        info.sha256_etag = is_sha256(info.etag);
        info.size = header_number(response.headers, "x-linked-size");
        if (!info.size && response.location.empty()) {
            info.size = header_number(response.headers, "content-length");
        }
        return info;
    }

    // retry_delay, doubling with each attempt (capped, so that a large max_attempts cannot
    // overflow the shift).
    void pause_before_retry(int attempt) const {
        std::this_thread::sleep_for(options_.retry_delay * (1 << std::min(attempt - 1, 6)));
    }

    // Network failures and server errors (5xx) are retried; the last answer is returned.
    HttpResponse head_with_retries(const std::string& url) {
        for (int attempt = 1;; ++attempt) {
            try {
                HttpResponse response = http_.head(url);
                if (response.status < 500 || attempt >= options_.max_attempts) return response;
            } catch (const Error& failure) {
                if (failure.code() != ErrorCode::kUnavailable || attempt >= options_.max_attempts) {
                    throw;
                }
            }
            pause_before_retry(attempt);
        }
    }

    [[noreturn]] void fail_for_status(const HttpResponse& response, const std::string& file) const {
        const std::string error_code = header(response.headers, "x-error-code");
        const std::string server_message = header(response.headers, "x-error-message");
        const std::string detail = server_message.empty() ? "" : " (" + server_message + ")";
        const std::string page = options_.endpoint + "/" + model_.repo_id;
        if (error_code == "RepoNotFound" || (response.status == 404 && error_code.empty())) {
            fail(ErrorCode::kNotFound,
                 "model '{}' was not found on {}{}; check the name, and if it is private set "
                 "HF_TOKEN to a token that can read it",
                 model_.repo_id, options_.endpoint, detail);
        }
        if (error_code == "RevisionNotFound") {
            fail(ErrorCode::kNotFound, "model '{}' has no revision '{}' on {}{}", model_.repo_id,
                 model_.revision, options_.endpoint, detail);
        }
        if (response.status == 401 || response.status == 403) {
            fail(ErrorCode::kPermissionDenied,
                 "{} refused access to '{}' of model '{}' (HTTP {}){}: {}", options_.endpoint, file,
                 model_.repo_id, response.status, detail,
                 options_.token ? fmt::format("the token in HF_TOKEN lacks access; accept the "
                                              "model's terms at {} with that account",
                                              page)
                                : fmt::format("the model is gated or private; accept its terms "
                                              "at {} and set HF_TOKEN to an access token",
                                              page));
        }
        fail(ErrorCode::kUnavailable, "{} answered HTTP {} for {}{}", options_.endpoint,
             response.status, response.url, detail);
    }

    // Puts the file's blob in place (unless already there) and links it from the snapshot.
    void fetch(const std::string& file, const FileInfo& info) {
        const fs::path blob = repo_dir_ / "blobs" / info.etag;
        if (!fs::exists(blob)) {
            BlobLock lock(locks_dir_ / (info.etag + ".lock"));
            // Checked again under the lock: another process may have fetched it meanwhile.
            if (!fs::exists(blob)) download_blob(file, info, blob);
        }
        // snapshots/<commit>/<dir>/<file> -> ../../[../]blobs/<etag>
        fs::path target = fs::path("..") / "..";
        const fs::path folder = fs::path(file).parent_path();
        for (auto depth = std::distance(folder.begin(), folder.end()); depth > 0; --depth) {
            target /= "..";
        }
        place_symlink(target / "blobs" / info.etag, snapshot_dir() / file);
    }

    void download_blob(const std::string& file, const FileInfo& info, const fs::path& blob) {
        make_directories(blob.parent_path());
        const fs::path partial = blob.string() + ".incomplete";
        std::error_code error;
        for (int attempt = 1;; ++attempt) {
            std::uint64_t have = fs::exists(partial, error) ? fs::file_size(partial, error) : 0;
            if (info.size && have > *info.size) have = 0;  // not ours: start over
            BlobWriter writer(partial, have, info.sha256_etag, progress_, file, info.size);
            try {
                if (!info.size || have < *info.size) {
                    const HttpResponse response = http_.get(resolve_url(file), have, writer);
                    if (response.status == 416) {  // the partial file does not fit: start over
                        fs::remove(partial, error);
                        if (attempt < options_.max_attempts) continue;
                    }
                    if (!writer.receiving()) fail_for_status(response, file);
                } else {
                    writer.open(have);  // complete already: only the checks remain
                }
            } catch (const Error& failure) {
                if (writer.receiving() && progress_ != nullptr) progress_->finish(false);
                if (failure.code() != ErrorCode::kUnavailable || attempt >= options_.max_attempts) {
                    if (failure.code() == ErrorCode::kUnavailable) {
                        fail(ErrorCode::kUnavailable,
                             "downloading {} of model '{}' failed after {} attempts ({} of {} "
                             "bytes kept in {}; run again to resume): {}",
                             file, model_.to_string(), attempt, writer.have(),
                             info.size ? std::to_string(*info.size) : "?", partial.string(),
                             failure.what());
                    }
                    throw;
                }
                pause_before_retry(attempt);
                continue;
            }
            verify(file, info, partial, writer);
            if (progress_ != nullptr) progress_->finish(true);
            fs::rename(partial, blob, error);
            if (error) {
                fail(ErrorCode::kUnavailable, "cannot move {} into place: {}", partial.string(),
                     error.message());
            }
            return;
        }
    }

    void verify(const std::string& file, const FileInfo& info, const fs::path& partial,
                BlobWriter& writer) {
        std::error_code error;
        if (info.size && writer.have() != *info.size) {
            if (progress_ != nullptr) progress_->finish(false);
            fs::remove(partial, error);
            fail(ErrorCode::kCorruptData,
                 "downloaded {} of model '{}' has {} bytes, but the server announced {}; the "
                 "download was removed, run again",
                 file, model_.to_string(), writer.have(), *info.size);
        }
        if (!info.sha256_etag) return;
        const std::string actual = writer.hex_digest();
        if (actual != info.etag) {
            if (progress_ != nullptr) progress_->finish(false);
            fs::remove(partial, error);
            fail(ErrorCode::kCorruptData,
                 "downloaded {} of model '{}' is corrupt: its SHA-256 is {} but the server "
                 "announced {}; the download was removed, run again",
                 file, model_.to_string(), actual, info.etag);
        }
    }

    const ModelRef& model_;
    const HubOptions& options_;
    ProgressSink* progress_;
    HttpClient http_;
    fs::path repo_dir_;
    fs::path locks_dir_;
    std::string commit_;  // empty until the first HEAD
};

// The .gguf files of a cached snapshot, as paths relative to it (dangling links left out).
std::vector<std::string> cached_gguf_files(const fs::path& snapshot) {
    std::vector<std::string> files;
    std::error_code error;
    for (auto it = fs::recursive_directory_iterator(snapshot, error);
         it != fs::recursive_directory_iterator(); it.increment(error)) {
        if (it->path().extension() == ".gguf" && fs::is_regular_file(it->path(), error)) {
            // lexically: the files are links into blobs/, which fs::relative would follow
            files.push_back(it->path().lexically_relative(snapshot).generic_string());
        }
    }
    return files;
}

// A GGUF file from a cache (when the selector picks exactly one cached file of that revision),
// else downloaded.
fs::path resolve_gguf(const ModelRef& model, const std::vector<fs::path>& roots,
                      const HubOptions& options, ProgressSink* progress) {
    for (const fs::path& root : roots) {
        const auto snapshot = cached_snapshot_dir(root, model);
        if (!snapshot) continue;
        const auto matches = matching_gguf_files(cached_gguf_files(*snapshot), model.gguf);
        if (matches.size() == 1 && !is_split_part(matches.front()))
            return *snapshot / matches.front();
    }
    if (options.offline) {
        std::vector<std::string> searched;
        for (const fs::path& root : roots) searched.push_back(root.string());
        fail(ErrorCode::kNotFound,
             "model '{}' is not in the cache (searched {}) and HF_HUB_OFFLINE is set, so it "
             "cannot be downloaded",
             model.to_string(), searched.empty() ? "no cache directory" : first_names(searched));
    }
    return download_model(model, options, progress);
}

bool looks_like_path(std::string_view name) {
    return name.starts_with('/') || name.starts_with("./") || name.starts_with("../") ||
           name.starts_with("~") || name == "." || name == "..";
}

std::string join(const std::vector<std::string>& items) {
    std::string joined;
    for (const auto& item : items) joined += (joined.empty() ? "" : ", ") + item;
    return joined;
}

}  // namespace

fs::path download_model(const ModelRef& model, const HubOptions& options, ProgressSink* progress) {
    if (options.offline) {
        fail(ErrorCode::kUnavailable,
             "model '{}' must be downloaded, but HF_HUB_OFFLINE is set: unset it or put the "
             "model in the cache ({})",
             model.to_string(), options.cache_dir.string());
    }
    if (options.cache_dir.empty()) {
        fail(ErrorCode::kInvalidArgument,
             "no cache directory to download model '{}' into (set HF_HUB_CACHE or HF_HOME)",
             model.to_string());
    }
    return Downloader(model, options, progress).run();
}

fs::path resolve_model(std::string_view name, const HubOptions& options, ProgressSink* progress) {
    std::error_code error;
    const fs::path as_path(name);
    if (fs::is_directory(as_path, error)) {
        const auto missing = missing_model_files(as_path);
        if (!missing.empty()) {
            fail(ErrorCode::kNotFound, "model directory '{}' lacks {}", name, join(missing));
        }
        return fs::absolute(as_path, error);
    }
    if (fs::is_regular_file(as_path, error) && as_path.extension() == ".gguf")
        return fs::absolute(as_path, error);  // a GGUF file holds the whole model
    if (looks_like_path(name)) {
        fail(ErrorCode::kNotFound, "model directory '{}' does not exist", name);
    }
    const ModelRef model = ModelRef::parse(name);

    std::vector<fs::path> roots;
    if (!options.cache_dir.empty()) roots.push_back(options.cache_dir);
    roots.insert(roots.end(), options.extra_cache_dirs.begin(), options.extra_cache_dirs.end());
    if (!model.gguf.empty()) return resolve_gguf(model, roots, options, progress);
    CacheLookup partial;
    for (const fs::path& root : roots) {
        CacheLookup lookup = find_cached_snapshot(root, model);
        if (lookup.snapshot) return *lookup.snapshot;
        if (partial.incomplete_snapshot.empty()) partial = std::move(lookup);
    }

    if (options.offline) {
        std::vector<std::string> searched;
        for (const fs::path& root : roots) searched.push_back(root.string());
        if (!partial.incomplete_snapshot.empty()) {
            fail(ErrorCode::kNotFound,
                 "model '{}' is only partly in the cache: {} lacks {}; HF_HUB_OFFLINE is set, so "
                 "nothing can be downloaded",
                 model.to_string(), partial.incomplete_snapshot.string(), join(partial.missing));
        }
        fail(ErrorCode::kNotFound,
             "model '{}' is not in the cache (searched {}; missing config.json and the weights) "
             "and HF_HUB_OFFLINE is set, so it cannot be downloaded",
             model.to_string(), searched.empty() ? "no cache directory" : join(searched));
    }
    return download_model(model, options, progress);
}

}  // namespace llmserve::hub
