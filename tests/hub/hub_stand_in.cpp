#include "hub_stand_in.h"

#include <httplib.h>
#include <openssl/evp.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>

#include "tests/common/test_paths.h"

namespace llmserve::hub::testing {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kChunk = 64 * 1024;

std::string digest_hex(const EVP_MD* algorithm, const std::string& bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, algorithm, nullptr) != 1) {
        throw std::runtime_error("OpenSSL digest failed");
    }
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) {
        hex += "0123456789abcdef"[digest[i] >> 4];
        hex += "0123456789abcdef"[digest[i] & 0xf];
    }
    return hex;
}

// The Hub stores weights with git LFS.
bool is_lfs(const std::string& file) {
    return file.ends_with(".safetensors") || file.ends_with(".bin") || file.ends_with(".gguf");
}

}  // namespace

std::string HubStandIn::sha256_hex(const std::string& bytes) {
    return digest_hex(EVP_sha256(), bytes);
}

std::string HubStandIn::git_blob_id(const std::string& bytes) {
    std::string object = "blob " + std::to_string(bytes.size());
    object += '\0';
    return digest_hex(EVP_sha1(), object + bytes);
}

HubStandIn::HubStandIn() : server_(std::make_unique<httplib::Server>()) {
    server_->Get(R"(/cdn/([0-9a-f]{64}))",
                 [this](const httplib::Request& request, httplib::Response& response) {
                     handle_cdn(request, response);
                 });
    server_->Get(R"(/([^/]+(?:/[^/]+)?)/resolve/([^/]+)/(.+))",
                 [this](const httplib::Request& request, httplib::Response& response) {
                     handle_resolve(request, response);
                 });
    server_->Get(R"(/api/models/([^/]+(?:/[^/]+)?)/revision/([^/]+))",
                 [this](const httplib::Request& request, httplib::Response& response) {
                     handle_file_list(request, response);
                 });
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("the Hub stand-in could not bind a port");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

HubStandIn::~HubStandIn() {
    stopping_ = true;  // ends stalled responses
    server_->stop();
    thread_.join();
}

std::string HubStandIn::endpoint() const {
    return "http://127.0.0.1:" + std::to_string(port_);
}

std::string HubStandIn::add_repo(const std::string& repo_id, const fs::path& dir, bool gated) {
    Repo repo;
    repo.commit = git_blob_id(repo_id);  // any 40-hex string does; this one is stable
    repo.gated = gated;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (!entry.is_regular_file()) continue;
        const std::string name = entry.path().filename().string();
        auto contents =
            std::make_shared<const std::string>(llmserve::testing::read_text(entry.path()));
        Blob blob{name, contents, sha256_hex(*contents), git_blob_id(*contents)};
        repo.files.emplace(name, blob);
        std::lock_guard lock(mutex_);
        cdn_[blob.sha256] = blob;
    }
    std::lock_guard lock(mutex_);
    const std::string commit = repo.commit;
    repos_[repo_id] = std::move(repo);
    return commit;
}

void HubStandIn::fail_requests(const std::string& file, int status, int times) {
    std::lock_guard lock(mutex_);
    request_failures_[file] = {status, times};
}

void HubStandIn::fail_contents(const std::string& file, int status, int times) {
    std::lock_guard lock(mutex_);
    contents_failures_[file] = {status, times};
}

int HubStandIn::take_failure(std::map<std::string, Failure>& failures, const std::string& file) {
    const auto it = failures.find(file);
    if (it == failures.end() || it->second.times <= 0) return 0;
    --it->second.times;
    return it->second.status;
}

void HubStandIn::drop_after(const std::string& file, std::size_t bytes, int times) {
    std::lock_guard lock(mutex_);
    drops_[file] = {bytes, times};
}

void HubStandIn::ignore_range(bool ignore) {
    std::lock_guard lock(mutex_);
    ignore_range_ = ignore;
}

void HubStandIn::corrupt(const std::string& file, bool corrupted) {
    std::lock_guard lock(mutex_);
    corrupted_[file] = corrupted;
}

void HubStandIn::stall(const std::string& file) {
    std::lock_guard lock(mutex_);
    stalled_[file] = true;
}

std::vector<HubStandIn::Request> HubStandIn::requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
}

void HubStandIn::clear_requests() {
    std::lock_guard lock(mutex_);
    requests_.clear();
}

std::size_t HubStandIn::record(const httplib::Request& request) {
    std::lock_guard lock(mutex_);
    requests_.push_back({request.method, request.path, request.get_header_value("Range"),
                         request.get_header_value("Authorization")});
    return requests_.size() - 1;
}

void HubStandIn::answer_error(httplib::Response& response, std::size_t index, int status,
                              const std::string& error_code, const std::string& message) {
    response.status = status;
    if (!error_code.empty()) response.set_header("X-Error-Code", error_code);
    response.set_header("X-Error-Message", message);
    response.set_content(message, "text/plain");
    requests_[index].status = status;
}

void HubStandIn::handle_resolve(const httplib::Request& request, httplib::Response& response) {
    const std::size_t index = record(request);
    const std::string repo_id = request.matches[1];
    const std::string revision = request.matches[2];
    const std::string file = request.matches[3];

    std::unique_lock lock(mutex_);
    const auto repo = repos_.find(repo_id);
    if (repo == repos_.end()) {
        return answer_error(response, index, 404, "RepoNotFound", "Repository not found");
    }
    if (repo->second.gated && request.get_header_value("Authorization") != "Bearer " + token()) {
        return answer_error(response, index, 401, "GatedRepo",
                            "Access to model " + repo_id +
                                " is restricted. You must be authenticated to access it.");
    }
    if (revision != "main" && revision != repo->second.commit) {
        return answer_error(response, index, 404, "RevisionNotFound",
                            "Invalid rev id: " + revision);
    }
    if (const int status = take_failure(request_failures_, file)) {
        return answer_error(response, index, status, "", "injected failure");
    }
    const auto found = repo->second.files.find(file);
    if (found == repo->second.files.end()) {
        return answer_error(response, index, 404, "EntryNotFound", file + " does not exist");
    }
    const Blob blob = found->second;
    response.set_header("X-Repo-Commit", repo->second.commit);
    if (is_lfs(file)) {
        response.set_header("X-Linked-Etag", "\"" + blob.sha256 + "\"");
        response.set_header("X-Linked-Size", std::to_string(blob.contents->size()));
        response.set_header("ETag", "\"" + blob.sha256 + "\"");
        response.set_redirect("http://localhost:" + std::to_string(port_) + "/cdn/" + blob.sha256,
                              302);
        requests_[index].status = 302;
        return;
    }
    response.set_header("ETag", "\"" + blob.git_id + "\"");
    lock.unlock();
    serve(request, response, blob, index);
}

// The Hub's model info: {"id", "sha": the commit, "siblings": [{"rfilename"}...]}.
void HubStandIn::handle_file_list(const httplib::Request& request, httplib::Response& response) {
    const std::size_t index = record(request);
    const std::string repo_id = request.matches[1];
    const std::string revision = request.matches[2];
    std::lock_guard lock(mutex_);
    const auto repo = repos_.find(repo_id);
    if (repo == repos_.end()) {
        return answer_error(response, index, 404, "RepoNotFound", "Repository not found");
    }
    if (repo->second.gated && request.get_header_value("Authorization") != "Bearer " + token()) {
        return answer_error(response, index, 401, "GatedRepo", "Access is restricted");
    }
    if (revision != "main" && revision != repo->second.commit) {
        return answer_error(response, index, 404, "RevisionNotFound",
                            "Invalid rev id: " + revision);
    }
    nlohmann::json siblings = nlohmann::json::array();
    for (const auto& [name, blob] : repo->second.files) siblings.push_back({{"rfilename", name}});
    const nlohmann::json info = {
        {"id", repo_id}, {"sha", repo->second.commit}, {"siblings", siblings}};
    response.set_content(info.dump(), "application/json");
    requests_[index].status = 200;
}

void HubStandIn::handle_cdn(const httplib::Request& request, httplib::Response& response) {
    const std::size_t index = record(request);
    std::unique_lock lock(mutex_);
    const auto found = cdn_.find(request.matches[1]);
    if (found == cdn_.end()) return answer_error(response, index, 404, "", "no such object");
    const Blob blob = found->second;
    lock.unlock();
    serve(request, response, blob, index);
}

void HubStandIn::serve(const httplib::Request& request, httplib::Response& response,
                       const Blob& blob, std::size_t index) {
    std::unique_lock lock(mutex_);
    if (request.method == "GET") {
        if (const int status = take_failure(contents_failures_, blob.name)) {
            return answer_error(response, index, status, "", "injected failure");
        }
    }
    std::shared_ptr<const std::string> contents = blob.contents;
    if (corrupted_[blob.name] && !contents->empty()) {
        auto changed = std::make_shared<std::string>(*contents);
        (*changed)[changed->size() / 2] ^= 0x01;
        contents = changed;
    }
    if (ignore_range_) {
        // cpp-httplib applies Range itself; the request object is ours to edit (it is only
        // handed to us as const), so forget the ranges to answer like a server without them.
        const_cast<httplib::Request&>(request).ranges.clear();
        response.status = 200;
    }
    std::optional<std::size_t> drop;
    if (const auto it = drops_.find(blob.name);
        request.method == "GET" && it != drops_.end() && it->second.times > 0) {
        --it->second.times;
        drop = it->second.after_bytes;
    }
    requests_[index].status = request.ranges.empty() ? 200 : 206;
    const bool stalled = request.method == "GET" && stalled_[blob.name];
    lock.unlock();
    if (stalled) {
        response.set_content_provider(
            contents->size(), "application/octet-stream",
            [this](std::size_t, std::size_t, httplib::DataSink&) {
                while (!stopping_) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));
                }
                return false;
            });
        return;
    }

    response.set_content_provider(
        contents->size(), "application/octet-stream",
        [this, contents, drop, index, sent = std::size_t{0}](std::size_t offset, std::size_t length,
                                                             httplib::DataSink& sink) mutable {
            std::size_t count = std::min(length, kChunk);
            if (drop) count = std::min(count, *drop - std::min(*drop, sent));
            if (count == 0) return false;  // cut the connection mid-body
            if (!sink.write(contents->data() + offset, count)) return false;
            sent += count;
            std::lock_guard guard(mutex_);
            requests_[index].body_bytes = sent;
            return true;
        });
}

}  // namespace llmserve::hub::testing
