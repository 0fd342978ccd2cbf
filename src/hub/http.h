// A small HTTP client over libcurl for the Hub's resolve URLs: HEAD for metadata and streaming
// GETs with Range. Redirects are followed here, hop by hop, so that the token is sent only to
// the Hub itself and never to the CDN it redirects large files to. Internal to src/hub.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace llmserve::hub {

using Headers = std::map<std::string, std::string>;  // names lower-cased; the last value wins

struct HttpResponse {
    long status = 0;
    Headers headers;
    std::string url;       // the URL that gave this response (after redirects)
    std::string location;  // absolute target of a redirect that was not followed
};

// Receives the final response of a GET: begin() once its status and headers are known (also
// when the body is empty), then the body in pieces. Exceptions thrown here abort the transfer
// and propagate out of HttpClient::get.
class BodySink {
  public:
    virtual ~BodySink() = default;
    virtual void begin(const HttpResponse& response) = 0;
    virtual void write(std::span<const std::byte> bytes) = 0;
};

class HttpClient {
  public:
    // `endpoint` ("https://huggingface.co") is the only origin `token` is sent to.
    HttpClient(const std::string& endpoint, std::optional<std::string> token);
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    // HEAD `url`. Redirects within the endpoint's origin (renamed repositories) are followed;
    // the first redirect elsewhere (an LFS file's CDN) is returned as is, with `location` set,
    // because the Hub puts the file's metadata on that redirect.
    HttpResponse head(const std::string& url);

    // GET `url`, following up to 10 redirects, with "Range: bytes=<range_start>-" when
    // range_start > 0. The final response goes to `sink`. Network failures (refused, reset,
    // timed out, closed before the announced length) throw kUnavailable naming the URL; the
    // bytes received until then have reached the sink.
    HttpResponse get(const std::string& url, std::uint64_t range_start, BodySink& sink);

  private:
    struct Transfer;
    HttpResponse perform(const std::string& url, bool head, std::uint64_t range_start,
                         BodySink* sink);

    struct CurlDeleter {
        void operator()(void* curl) const;
    };
    std::unique_ptr<void, CurlDeleter> curl_;  // one easy handle, so connections are reused
    std::string endpoint_origin_;
    std::optional<std::string> token_;
};

// "scheme://host:port" of `url`, lower-cased with the default port filled in; empty when the
// URL cannot be parsed.
std::string url_origin(const std::string& url);

// Percent-encodes everything but unreserved characters; with keep_slashes, '/' stays as is.
std::string url_encode(std::string_view text, bool keep_slashes);

}  // namespace llmserve::hub
