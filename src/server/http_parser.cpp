#include "server/http_parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <optional>

namespace llmserve::server {
namespace {

using Status = ParseResult::Status;

// RFC 9110 token characters (method and header names).
bool is_token_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), is_token_char);
}

// Field values may hold visible characters, spaces, tabs and obs-text; no other control bytes.
bool is_field_value(std::string_view text) {
    return std::none_of(text.begin(), text.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return (u < 0x20 && c != '\t') || u == 0x7f;
    });
}

std::string_view trim(std::string_view text) {
    const auto blank = [](char c) { return c == ' ' || c == '\t'; };
    while (!text.empty() && blank(text.front())) text.remove_prefix(1);
    while (!text.empty() && blank(text.back())) text.remove_suffix(1);
    return text;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// Whether a comma-separated header value (Connection) lists `option`.
bool lists_option(std::string_view value, std::string_view option) {
    while (!value.empty()) {
        const std::size_t comma = value.find(',');
        if (equals_ignoring_case(trim(value.substr(0, comma)), option)) return true;
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
    return false;
}

// The end of the line starting at `from` (the index of its '\n'), or npos.
std::size_t line_end(std::string_view data, std::size_t from) {
    return data.find('\n', from);
}

// The line [from, end) without its trailing '\r'.
std::string_view line_at(std::string_view data, std::size_t from, std::size_t end) {
    std::string_view line = data.substr(from, end - from);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void parse_query(std::string_view query, httplib::Params& params) {
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        const std::size_t eq = pair.find('=');
        std::string key;
        std::string value;
        if (decode_path(pair.substr(0, eq), key) &&
            (eq == std::string_view::npos || decode_path(pair.substr(eq + 1), value))) {
            std::replace(key.begin(), key.end(), '+', ' ');
            std::replace(value.begin(), value.end(), '+', ' ');
            if (!key.empty()) params.emplace(std::move(key), std::move(value));
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
}

}  // namespace

bool decode_path(std::string_view encoded, std::string& decoded) {
    decoded.clear();
    decoded.reserve(encoded.size());
    for (std::size_t i = 0; i < encoded.size(); ++i) {
        char c = encoded[i];
        if (c == '%') {
            if (i + 2 >= encoded.size()) return false;
            const int high = hex_value(encoded[i + 1]);
            const int low = hex_value(encoded[i + 2]);
            if (high < 0 || low < 0) return false;
            c = static_cast<char>(high * 16 + low);
            i += 2;
        }
        if (c == '\0') return false;
        decoded += c;
    }
    return true;
}

void RequestParser::reset() {
    stage_ = Stage::kHeaders;
    position_ = 0;
    body_length_ = 0;
    chunk_left_ = 0;
    keep_alive_ = true;
    expects_continue_ = false;
    request_ = httplib::Request();
}

ParseResult RequestParser::fail(int status, std::string message) {
    ParseResult result;
    result.status = Status::kError;
    result.error_status = status;
    result.error = std::move(message);
    return result;
}

ParseResult RequestParser::parse(std::string_view data) {
    if (stage_ == Stage::kHeaders) {
        // Blank lines before the request line are ignored (RFC 9112 section 2.2).
        std::size_t start = 0;
        while (start < data.size() && (data[start] == '\r' || data[start] == '\n')) ++start;
        if (start > limits_.max_header_bytes) return fail(400, "the request line is missing");
        // The head ends at the first empty line.
        std::size_t end = std::string_view::npos;
        for (std::size_t nl = line_end(data, start); nl != std::string_view::npos;
             nl = line_end(data, nl + 1)) {
            if (nl + 1 < data.size() && data[nl + 1] == '\n') {
                end = nl + 2;
                break;
            }
            if (nl + 2 < data.size() && data[nl + 1] == '\r' && data[nl + 2] == '\n') {
                end = nl + 3;
                break;
            }
            if (nl + 1 - start > limits_.max_header_bytes) break;
        }
        if (end == std::string_view::npos) {
            if (data.size() - start > limits_.max_header_bytes) {
                return fail(431, fmt::format("the request line and headers exceed {} bytes",
                                             limits_.max_header_bytes));
            }
            return {};
        }
        if (end - start > limits_.max_header_bytes) {
            return fail(431, fmt::format("the request line and headers exceed {} bytes",
                                         limits_.max_header_bytes));
        }
        ParseResult head = parse_head(data.substr(start, end - start));
        if (head.status == Status::kError) return head;
        position_ = end;
    }
    if (stage_ == Stage::kFixedBody) {
        if (data.size() - position_ < body_length_) {
            ParseResult waiting;
            waiting.expects_continue = expects_continue_ && data.size() == position_;
            return waiting;
        }
        request_.body.assign(data.substr(position_, body_length_));
        position_ += body_length_;
        stage_ = Stage::kDone;
    }
    if (stage_ == Stage::kChunkSize || stage_ == Stage::kChunkData || stage_ == Stage::kTrailers) {
        ParseResult chunks = parse_chunks(data);
        if (chunks.status != Status::kComplete) return chunks;
    }
    ParseResult done;
    done.status = Status::kComplete;
    done.consumed = position_;
    return done;
}

ParseResult RequestParser::parse_head(std::string_view head) {
    // Request line: METHOD SP request-target SP HTTP-version.
    std::size_t nl = line_end(head, 0);
    const std::string_view line = line_at(head, 0, nl);
    const std::size_t first_space = line.find(' ');
    const std::size_t second_space =
        first_space == std::string_view::npos ? first_space : line.find(' ', first_space + 1);
    if (second_space == std::string_view::npos ||
        line.find(' ', second_space + 1) != std::string_view::npos) {
        return fail(400, "the request line must be 'METHOD /path HTTP/1.1'");
    }
    const std::string_view method = line.substr(0, first_space);
    const std::string_view target = line.substr(first_space + 1, second_space - first_space - 1);
    const std::string_view version = line.substr(second_space + 1);
    if (!is_token(method)) return fail(400, "the request method is not a valid token");
    if (target.empty() || target.front() != '/' || !is_field_value(target) ||
        target.find_first_of(" \t") != std::string_view::npos) {
        return fail(400, "the request target must be a path starting with '/'");
    }
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        if (version.substr(0, 5) != "HTTP/") {
            return fail(400, "the request line must end with the HTTP version");
        }
        return fail(
            505, fmt::format("HTTP version {} is not supported; use HTTP/1.1", version.substr(5)));
    }
    request_.method = std::string(method);
    request_.target = std::string(target);
    request_.version = std::string(version);
    const std::size_t question = target.find('?');
    if (!decode_path(target.substr(0, question), request_.path)) {
        return fail(400, "the request path holds a malformed or NUL %-escape");
    }
    if (question != std::string_view::npos)
        parse_query(target.substr(question + 1), request_.params);

    // Header fields.
    std::optional<std::size_t> content_length;
    bool chunked = false;
    bool transfer_encoding = false;
    std::size_t count = 0;
    for (std::size_t from = nl + 1; from < head.size(); from = nl + 1) {
        nl = line_end(head, from);
        const std::string_view field = line_at(head, from, nl);
        if (field.empty()) break;
        if (field.front() == ' ' || field.front() == '\t') {
            return fail(400, "folded header lines (obs-fold) are not accepted");
        }
        if (++count > limits_.max_headers) {
            return fail(431, fmt::format("more than {} header fields", limits_.max_headers));
        }
        const std::size_t colon = field.find(':');
        const std::string_view name =
            colon == std::string_view::npos ? field : field.substr(0, colon);
        if (colon == std::string_view::npos || !is_token(name)) {
            return fail(400, "a header line is not 'Name: value' with a valid name");
        }
        const std::string_view value = trim(field.substr(colon + 1));
        if (!is_field_value(value)) {
            return fail(400, fmt::format("header {} holds control characters", name));
        }
        if (equals_ignoring_case(name, "Content-Length")) {
            std::size_t length = 0;
            const auto [end, error] =
                std::from_chars(value.data(), value.data() + value.size(), length);
            if (value.empty() || value.front() == '+' || error != std::errc{} ||
                end != value.data() + value.size()) {
                return fail(400, fmt::format("Content-Length must be a non-negative integer, "
                                             "got '{}'",
                                             value.substr(0, 40)));
            }
            if (content_length && *content_length != length) {
                return fail(400, "conflicting Content-Length headers");
            }
            content_length = length;
        } else if (equals_ignoring_case(name, "Transfer-Encoding")) {
            if (transfer_encoding || !equals_ignoring_case(value, "chunked")) {
                return fail(501, fmt::format("Transfer-Encoding '{}' is not supported (only a "
                                             "single 'chunked')",
                                             value.substr(0, 40)));
            }
            transfer_encoding = true;
            chunked = true;
        }
        request_.headers.emplace(std::string(name), std::string(value));
    }
    if (chunked && content_length) {
        return fail(400, "Transfer-Encoding and Content-Length must not be sent together");
    }
    if (content_length && *content_length > static_cast<std::size_t>(limits_.max_body_bytes)) {
        return fail(413, fmt::format("the request body of {} bytes is larger than the limit of "
                                     "{} bytes (MAX_BODY_BYTES)",
                                     *content_length, limits_.max_body_bytes));
    }
    const std::string connection = request_.get_header_value("Connection");
    keep_alive_ = version == "HTTP/1.1" ? !lists_option(connection, "close")
                                        : lists_option(connection, "keep-alive");
    expects_continue_ =
        version == "HTTP/1.1" &&
        equals_ignoring_case(trim(request_.get_header_value("Expect")), "100-continue");
    if (chunked) {
        stage_ = Stage::kChunkSize;
    } else {
        body_length_ = content_length.value_or(0);
        stage_ = Stage::kFixedBody;
    }
    return {};
}

ParseResult RequestParser::parse_chunks(std::string_view data) {
    ParseResult waiting;
    waiting.expects_continue = expects_continue_ && request_.body.empty() &&
                               stage_ == Stage::kChunkSize && data.size() == position_;
    while (true) {
        if (stage_ == Stage::kChunkSize) {
            const std::size_t nl = line_end(data, position_);
            if (nl == std::string_view::npos) {
                if (data.size() - position_ > 1024)
                    return fail(400, "a chunk-size line is too long");
                return waiting;
            }
            std::string_view line = line_at(data, position_, nl);
            line = trim(line.substr(0, line.find(';')));  // chunk extensions are ignored
            std::size_t size = 0;
            const auto [end, error] =
                std::from_chars(line.data(), line.data() + line.size(), size, 16);
            if (line.empty() || error != std::errc{} || end != line.data() + line.size()) {
                return fail(400, "a chunk size is not a hexadecimal number");
            }
            if (size > static_cast<std::size_t>(limits_.max_body_bytes) - request_.body.size()) {
                return fail(413, fmt::format("the request body is larger than the limit of {} "
                                             "bytes (MAX_BODY_BYTES)",
                                             limits_.max_body_bytes));
            }
            position_ = nl + 1;
            chunk_left_ = size;
            stage_ = size == 0 ? Stage::kTrailers : Stage::kChunkData;
            waiting.expects_continue = false;
        }
        if (stage_ == Stage::kChunkData) {
            // The chunk's data, then its CRLF.
            const std::size_t available = data.size() - position_;
            if (available < chunk_left_ + 1) return waiting;
            std::size_t after = position_ + chunk_left_;
            if (data[after] == '\r') {
                if (available < chunk_left_ + 2) return waiting;
                ++after;
            }
            if (data[after] != '\n') return fail(400, "a chunk's data is not followed by CRLF");
            request_.body.append(data.substr(position_, chunk_left_));
            position_ = after + 1;
            stage_ = Stage::kChunkSize;
            continue;
        }
        if (stage_ == Stage::kTrailers) {
            // Trailer fields are read and dropped, up to the empty line.
            while (true) {
                const std::size_t nl = line_end(data, position_);
                if (nl == std::string_view::npos) {
                    if (data.size() - position_ > limits_.max_header_bytes) {
                        return fail(431, "the chunked trailer is too long");
                    }
                    return waiting;
                }
                const bool empty = line_at(data, position_, nl).empty();
                position_ = nl + 1;
                if (empty) break;
            }
            stage_ = Stage::kDone;
            ParseResult done;
            done.status = Status::kComplete;
            return done;
        }
        return waiting;
    }
}

}  // namespace llmserve::server
