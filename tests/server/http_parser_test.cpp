// RequestParser: framing, strictness and incremental parsing of HTTP/1.1 requests.
#include "server/http_parser.h"

#include <gtest/gtest.h>

namespace llmserve::server {
namespace {

using Status = ParseResult::Status;

ParseLimits limits(long long max_body = 1024) {
    ParseLimits out;
    out.max_header_bytes = 512;
    out.max_headers = 8;
    out.max_body_bytes = max_body;
    return out;
}

ParseResult parse_all(RequestParser& parser, const std::string& data) {
    return parser.parse(data);
}

TEST(RequestParser, SimpleGetWithQueryAndKeepAlive) {
    RequestParser parser(limits());
    const std::string data = "GET /a%20b?x=1&y=two+words HTTP/1.1\r\nHost: h\r\n\r\n";
    const ParseResult result = parse_all(parser, data);
    ASSERT_EQ(result.status, Status::kComplete) << result.error;
    EXPECT_EQ(result.consumed, data.size());
    EXPECT_EQ(parser.request().method, "GET");
    EXPECT_EQ(parser.request().path, "/a b");
    EXPECT_EQ(parser.request().get_param_value("y"), "two words");
    EXPECT_EQ(parser.request().get_header_value("host"), "h");
    EXPECT_TRUE(parser.keep_alive());
}

TEST(RequestParser, ConnectionSemanticsOfBothVersions) {
    RequestParser parser(limits());
    ASSERT_EQ(parser.parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").status,
              Status::kComplete);
    EXPECT_FALSE(parser.keep_alive());
    parser.reset();
    ASSERT_EQ(parser.parse("GET / HTTP/1.0\r\n\r\n").status, Status::kComplete);
    EXPECT_FALSE(parser.keep_alive());
    parser.reset();
    ASSERT_EQ(parser.parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").status,
              Status::kComplete);
    EXPECT_TRUE(parser.keep_alive());
}

TEST(RequestParser, BodyArrivingByteByByteCompletesOnce) {
    const std::string data = "POST /generate HTTP/1.1\r\nContent-Length: 11\r\n\r\n{\"prompt\":1}";
    RequestParser parser(limits());
    const std::string request = data.substr(0, data.size() - 1);  // body is 11 bytes
    for (std::size_t n = 1; n < request.size(); ++n) {
        ASSERT_EQ(parser.parse(request.substr(0, n)).status, Status::kIncomplete) << n;
    }
    const ParseResult result = parser.parse(request);
    ASSERT_EQ(result.status, Status::kComplete);
    EXPECT_EQ(parser.request().body, "{\"prompt\":1");
    EXPECT_EQ(result.consumed, request.size());
}

TEST(RequestParser, PipelinedRequestsAreTakenOneAtATime) {
    const std::string first = "GET /health HTTP/1.1\r\n\r\n";
    const std::string second = "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    RequestParser parser(limits());
    std::string buffer = first + second;
    ParseResult result = parser.parse(buffer);
    ASSERT_EQ(result.status, Status::kComplete);
    EXPECT_EQ(result.consumed, first.size());
    EXPECT_EQ(parser.request().path, "/health");
    buffer.erase(0, result.consumed);
    parser.reset();
    result = parser.parse(buffer);
    ASSERT_EQ(result.status, Status::kComplete);
    EXPECT_EQ(parser.request().body, "hi");
    EXPECT_EQ(result.consumed, second.size());
}

TEST(RequestParser, ChunkedBodyIsDecodedWithExtensionsAndTrailers) {
    const std::string data =
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\nNEXT";
    RequestParser parser(limits());
    for (std::size_t n = 1; n < data.size() - 4; ++n) {
        ASSERT_EQ(parser.parse(data.substr(0, n)).status, Status::kIncomplete) << n;
    }
    const ParseResult result = parser.parse(data);
    ASSERT_EQ(result.status, Status::kComplete) << result.error;
    EXPECT_EQ(parser.request().body, "hello world");
    EXPECT_EQ(result.consumed, data.size() - 4);
}

struct Refusal {
    std::string name;
    std::string data;
    int status;
    std::string message_part;
};

constexpr char kNulHeader[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";

TEST(RequestParser, AmbiguousOrMalformedRequestsAreRefusedWithTheirReason) {
    const std::vector<Refusal> cases = {
        {"conflicting Content-Length",
         "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400,
         "conflicting Content-Length"},
        {"Transfer-Encoding with Content-Length",
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400,
         "Transfer-Encoding and Content-Length"},
        {"negative Content-Length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400,
         "non-negative integer"},
        {"Content-Length with a sign", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400,
         "non-negative integer"},
        {"Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400,
         "non-negative integer"},
        {"body over the limit", "POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413, "5000"},
        {"unknown transfer coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
         "gzip"},
        {"obs-fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400, "folded"},
        {"space before colon", "GET / HTTP/1.1\r\nA : b\r\n\r\n", 400, "Name: value"},
        {"NUL in a value", std::string(kNulHeader, sizeof(kNulHeader) - 1), 400, "control"},
        {"HTTP/2 request line", "GET / HTTP/2.0\r\n\r\n", 505, "2.0"},
        {"not a path", "GET http://x/ HTTP/1.1\r\n\r\n", 400, "path"},
        {"NUL escape in the path", "GET /a%00 HTTP/1.1\r\n\r\n", 400, "escape"},
        {"chunk over the limit", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
         413, "1024"},
        {"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
         "hexadecimal"},
        {"too many headers",
         "GET / HTTP/1.1\r\nA: 1\r\nA: 2\r\nA: 3\r\nA: 4\r\nA: 5\r\nA: 6\r\nA: 7\r\nA: 8\r\nA: "
         "9\r\n\r\n",
         431, "header fields"},
    };
    for (const Refusal& c : cases) {
        RequestParser parser(limits());
        const ParseResult result = parser.parse(c.data);
        ASSERT_EQ(result.status, Status::kError) << c.name;
        EXPECT_EQ(result.error_status, c.status) << c.name;
        EXPECT_NE(result.error.find(c.message_part), std::string::npos)
            << c.name << ": " << result.error;
    }
}

TEST(RequestParser, DuplicateEqualContentLengthIsAccepted) {
    RequestParser parser(limits());
    const ParseResult result =
        parser.parse("POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok");
    ASSERT_EQ(result.status, Status::kComplete) << result.error;
    EXPECT_EQ(parser.request().body, "ok");
}

TEST(RequestParser, OversizedHeadersAreRefusedBeforeTheirEnd) {
    RequestParser parser(limits());
    const std::string data = "GET / HTTP/1.1\r\nA: " + std::string(600, 'x');
    const ParseResult result = parser.parse(data);
    ASSERT_EQ(result.status, Status::kError);
    EXPECT_EQ(result.error_status, 431);
}

TEST(RequestParser, ExpectContinueIsReportedUntilTheBodyStarts) {
    RequestParser parser(limits());
    const std::string head = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    EXPECT_TRUE(parser.parse(head).expects_continue);
    EXPECT_FALSE(parser.parse(head + "o").expects_continue);
    EXPECT_EQ(parser.parse(head + "ok").status, Status::kComplete);
}

}  // namespace
}  // namespace llmserve::server
