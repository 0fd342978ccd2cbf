// Incremental parsing of one HTTP/1.1 request (request line, headers, a Content-Length or chunked
// body) from the bytes a connection has received so far. Strict where laxness lets a request be
// read two ways: conflicting Content-Length headers, Transfer-Encoding with Content-Length, a
// negative or non-numeric length, folded header lines and control characters are refused, and
// a body over the limit is refused from its declared length before any of it is read.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace llmserve::server {

struct ParseLimits {
    std::size_t max_header_bytes = 16 * 1024;  // request line + headers (and chunked trailers)
    std::size_t max_headers = 100;
    long long max_body_bytes = 1 << 20;
};

struct ParseResult {
    enum class Status { kIncomplete, kComplete, kError };
    Status status = Status::kIncomplete;
    std::size_t consumed = 0;  // kComplete: the request's bytes at the front of the input
    int error_status = 0;      // kError: 400, 413, 431, 501 or 505
    std::string error;         // kError: what is wrong, for the client
    // kIncomplete: the headers ask for "100 Continue" before the client sends the body.
    bool expects_continue = false;
};

class RequestParser {
  public:
    explicit RequestParser(ParseLimits limits) : limits_(limits) {}

    // Parses `data`: every byte received for this request so far, from its first byte (the
    // same prefix, grown, on each call). Work already done on the prefix is not repeated.
    ParseResult parse(std::string_view data);

    // The parsed request (method, target, path, params, version, headers, body) once parse()
    // returned kComplete.
    httplib::Request& request() { return request_; }
    // Whether the connection may carry another request after this one (HTTP/1.1 unless
    // "Connection: close"; HTTP/1.0 only with "Connection: keep-alive").
    bool keep_alive() const { return keep_alive_; }

    // Forgets this request, ready for the next one on the connection.
    void reset();

  private:
    enum class Stage { kHeaders, kFixedBody, kChunkSize, kChunkData, kTrailers, kDone };

    ParseResult fail(int status, std::string message);
    ParseResult parse_head(std::string_view head);
    ParseResult parse_chunks(std::string_view data);

    ParseLimits limits_;
    Stage stage_ = Stage::kHeaders;
    std::size_t position_ = 0;     // next byte of the input to look at
    std::size_t body_length_ = 0;  // kFixedBody: the declared length
    std::size_t chunk_left_ = 0;   // kChunkData: bytes of the current chunk still to come
    bool keep_alive_ = true;
    bool expects_continue_ = false;
    httplib::Request request_;
};

// Percent-decodes a path ("%2F" -> "/"); false when an escape is malformed or decodes to NUL.
bool decode_path(std::string_view encoded, std::string& decoded);

}  // namespace llmserve::server
