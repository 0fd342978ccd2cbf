// A stand-in for the Hugging Face Hub, in-process on 127.0.0.1 (cpp-httplib): serves model
// folders under the Hub's URL scheme and headers, records every request, and can be told to
// misbehave (error statuses, dropped connections, ignored Range headers, corrupted content).
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace llmserve::hub::testing {

class HubStandIn {
  public:
    struct Request {
        std::string method;  // "HEAD" or "GET"
        std::string path;
        std::string range;          // the Range header, empty when absent
        std::string authorization;  // the Authorization header, empty when absent
        int status = 0;
        std::size_t body_bytes = 0;  // body bytes actually sent
    };

    HubStandIn();  // listening on a free port when it returns
    ~HubStandIn();
    HubStandIn(const HubStandIn&) = delete;
    HubStandIn& operator=(const HubStandIn&) = delete;

    std::string endpoint() const;  // "http://127.0.0.1:<port>"

    // Serves every file of `dir` as repository `repo_id`, revision "main" or the returned commit
    // (a hash of the id), and its file list at /api/models/<repo_id>/revision/<revision> as the
    // Hub does. *.safetensors, *.bin and *.gguf files are LFS files: their resolve URL answers
    // 302 to http://localhost:<port>/cdn/<sha256> (another origin, like the Hub's CDN) with
    // X-Linked-Etag = the SHA-256 and X-Linked-Size; other files answer 200 with
    // ETag = their git blob id. A gated repository answers 401 unless the request carries
    // "Authorization: Bearer <token()>".
    std::string add_repo(const std::string& repo_id, const std::filesystem::path& dir,
                         bool gated = false);
    std::string token() const { return "hf_stand_in_token"; }

    // The next `times` requests of `file`'s resolve URL (HEAD or GET) answer `status`.
    void fail_requests(const std::string& file, int status, int times = 1);
    // The next `times` GETs of `file`'s contents (its CDN URL for LFS files) answer `status`.
    void fail_contents(const std::string& file, int status, int times = 1);
    // The next `times` GETs of `file`'s contents close the connection after `bytes` body bytes.
    void drop_after(const std::string& file, std::size_t bytes, int times = 1);
    // Range headers are ignored: the whole file comes back with 200.
    void ignore_range(bool ignore);
    // `file`'s contents are served with one byte changed (same length, same ETag).
    void corrupt(const std::string& file, bool corrupted);
    // GETs of `file`'s contents answer their headers, then send nothing until the stand-in is
    // destroyed (a stalled download).
    void stall(const std::string& file);

    std::vector<Request> requests() const;
    void clear_requests();

    // SHA-256 and git blob id (SHA-1 of "blob <size>\0" + contents), lower-case hex.
    static std::string sha256_hex(const std::string& bytes);
    static std::string git_blob_id(const std::string& bytes);

  private:
    struct Blob {
        std::string name;  // the file's name in its repository
        std::shared_ptr<const std::string> contents;
        std::string sha256;
        std::string git_id;
    };
    struct Repo {
        std::string commit;
        bool gated = false;
        std::map<std::string, Blob> files;  // by name
    };

    void handle_resolve(const httplib::Request& request, httplib::Response& response);
    void handle_cdn(const httplib::Request& request, httplib::Response& response);
    void handle_file_list(const httplib::Request& request, httplib::Response& response);
    // Answers with `blob`'s contents, applying the faults set for it.
    void serve(const httplib::Request& request, httplib::Response& response, const Blob& blob,
               std::size_t record);
    void answer_error(httplib::Response& response, std::size_t record, int status,
                      const std::string& error_code, const std::string& message);
    std::size_t record(const httplib::Request& request);

    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;

    mutable std::mutex mutex_;  // guards everything below
    std::map<std::string, Repo> repos_;
    std::map<std::string, Blob> cdn_;  // sha256 -> blob
    std::vector<Request> requests_;
    struct Failure {
        int status = 0;
        int times = 0;
    };
    // Consumes one injected failure for `file`; its status, or 0 when none is left.
    static int take_failure(std::map<std::string, Failure>& failures, const std::string& file);

    std::map<std::string, Failure> request_failures_;
    std::map<std::string, Failure> contents_failures_;
    struct Drop {
        std::size_t after_bytes = 0;
        int times = 0;
    };
    std::map<std::string, Drop> drops_;
    std::map<std::string, bool> corrupted_;
    std::map<std::string, bool> stalled_;
    std::atomic<bool> stopping_{false};
    bool ignore_range_ = false;
};

}  // namespace llmserve::hub::testing
