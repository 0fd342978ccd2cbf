#include "hub/http.h"

#include "common/error.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <mutex>

namespace llmserve::hub {
namespace {

constexpr int kMaxRedirects = 10;
constexpr long kConnectTimeoutSeconds = 30;
// A transfer that moves less than 1 byte/s for a minute is stalled: give up and let the caller
// resume it.
constexpr long kStallSeconds = 60;
constexpr const char* kUserAgent = "llmserve/0.1";

CURL* as_curl(void* curl) {
    return static_cast<CURL*>(curl);
}

void global_init_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fail(ErrorCode::kInternal, "libcurl failed to initialise");
        }
    });
}

std::string lower(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

std::string trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) return {};
    return std::string(text.substr(first, text.find_last_not_of(" \t\r\n") - first + 1));
}

bool is_redirect(long status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

struct SlistDeleter {
    void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

void append(Slist& list, const std::string& line) {
    curl_slist* extended = curl_slist_append(list.get(), line.c_str());
    if (extended == nullptr) fail(ErrorCode::kResourceExhausted, "out of memory for HTTP headers");
    list.release();
    list.reset(extended);
}

}  // namespace

// State shared with libcurl's callbacks during one request.
struct HttpClient::Transfer {
    CURL* curl = nullptr;
    HttpResponse response;
    BodySink* sink = nullptr;
    bool begun = false;
    std::exception_ptr error;  // thrown by the sink; C callbacks must not throw

    void begin_body() {
        begun = true;
        if (sink != nullptr) sink->begin(response);
    }

    static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
        auto& transfer = *static_cast<Transfer*>(user);
        const std::string_view line(data, size * count);
        if (line.starts_with("HTTP/")) {
            transfer.response.headers.clear();  // a new response (1xx or after a redirect)
        } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
            transfer.response.headers[lower(std::string(line.substr(0, colon)))] =
                trim(line.substr(colon + 1));
        }
        return size * count;
    }

    static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
        auto& transfer = *static_cast<Transfer*>(user);
        try {
            if (!transfer.begun) {
                curl_easy_getinfo(transfer.curl, CURLINFO_RESPONSE_CODE, &transfer.response.status);
                if (is_redirect(transfer.response.status)) return size * count;  // discarded
                transfer.begin_body();
            }
            if (transfer.sink != nullptr) {
                transfer.sink->write({reinterpret_cast<const std::byte*>(data), size * count});
            }
            return size * count;
        } catch (...) {
            transfer.error = std::current_exception();
            return 0;  // makes libcurl abort with CURLE_WRITE_ERROR
        }
    }
};

void HttpClient::CurlDeleter::operator()(void* curl) const {
    curl_easy_cleanup(as_curl(curl));
}

HttpClient::HttpClient(const std::string& endpoint, std::optional<std::string> token)
    : endpoint_origin_(url_origin(endpoint)), token_(std::move(token)) {
    global_init_once();
    curl_.reset(curl_easy_init());
    if (!curl_) fail(ErrorCode::kResourceExhausted, "libcurl could not create a handle");
    if (endpoint_origin_.empty()) {
        fail(ErrorCode::kInvalidArgument, "HF_ENDPOINT '{}' is not a valid http(s) URL", endpoint);
    }
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::perform(const std::string& url, bool head, std::uint64_t range_start,
                                 BodySink* sink) {
    CURL* curl = as_curl(curl_.get());
    curl_easy_reset(curl);  // keeps the connection cache
    Transfer transfer;
    transfer.curl = curl;
    transfer.response.url = url;
    transfer.sink = sink;

    Slist headers;
    if (token_ && url_origin(url) == endpoint_origin_) {
        append(headers, "Authorization: Bearer " + *token_);
    }
    if (range_start > 0) append(headers, fmt::format("Range: bytes={}-", range_start));

    char error_text[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOBODY, head ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(curl, CURLOPT_USERAGENT, kUserAgent);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &Transfer::on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Transfer::on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_text);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutSeconds);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, kStallSeconds);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);

    const CURLcode code = curl_easy_perform(curl);
    if (transfer.error) std::rethrow_exception(transfer.error);
    if (code != CURLE_OK) {
        fail(ErrorCode::kUnavailable, "{} {} failed: {}", head ? "HEAD" : "GET", url,
             error_text[0] != '\0' ? error_text : curl_easy_strerror(code));
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &transfer.response.status);
    if (is_redirect(transfer.response.status)) {
        char* location = nullptr;
        curl_easy_getinfo(curl, CURLINFO_REDIRECT_URL, &location);
        if (location != nullptr) transfer.response.location = location;
    } else if (!head && !transfer.begun) {
        transfer.begin_body();  // an empty body: the sink still sees the response
    }
    return std::move(transfer.response);
}

HttpResponse HttpClient::head(const std::string& url) {
    std::string current = url;
    for (int hop = 0; hop <= kMaxRedirects; ++hop) {
        HttpResponse response = perform(current, true, 0, nullptr);
        if (response.location.empty() || url_origin(response.location) != endpoint_origin_) {
            return response;
        }
        current = response.location;
    }
    fail(ErrorCode::kUnavailable, "HEAD {}: more than {} redirects", url, kMaxRedirects);
}

HttpResponse HttpClient::get(const std::string& url, std::uint64_t range_start, BodySink& sink) {
    std::string current = url;
    for (int hop = 0; hop <= kMaxRedirects; ++hop) {
        HttpResponse response = perform(current, false, range_start, &sink);
        if (response.location.empty()) return response;
        current = response.location;
    }
    fail(ErrorCode::kUnavailable, "GET {}: more than {} redirects", url, kMaxRedirects);
}

std::string url_origin(const std::string& url) {
    CURLU* parsed = curl_url();
    if (parsed == nullptr) return {};
    std::string origin;
    char* scheme = nullptr;
    char* host = nullptr;
    char* port = nullptr;
    if (curl_url_set(parsed, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
        curl_url_get(parsed, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(parsed, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(parsed, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        const std::string scheme_text = lower(scheme);
        if (scheme_text == "http" || scheme_text == "https") {
            origin = scheme_text + "://" + lower(host) + ":" + port;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(parsed);
    return origin;
}

std::string url_encode(std::string_view text, bool keep_slashes) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string encoded;
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~' ||
            (keep_slashes && c == '/')) {
            encoded += c;
        } else {
            encoded += '%';
            encoded += kHex[byte >> 4];
            encoded += kHex[byte & 0xf];
        }
    }
    return encoded;
}

}  // namespace llmserve::hub
