#include "io/json_util.h"

#include "common/error.h"

#include <set>
#include <vector>

namespace llmserve::io {
namespace {

constexpr std::size_t kMaxDepth = 64;

// The parser's message without its "[json.exception.parse_error.101] " tag, and with the input
// bytes it quotes escaped: they may be invalid UTF-8, which would poison any JSON error reply.
std::string readable_parser_message(std::string_view message) {
    if (message.starts_with("[json.exception.")) {
        const auto tag_end = message.find("] ");
        if (tag_end != std::string_view::npos) message.remove_prefix(tag_end + 2);
    }
    std::string readable;
    for (const char c : message) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte >= 0x7f) {
            readable += fmt::format("\\x{:02x}", byte);
        } else {
            readable += c;
        }
    }
    return readable;
}

// A SAX pass that builds nothing: reports syntax errors with their position, and rejects
// duplicate keys and runaway nesting before the DOM parser (which silently keeps the last of
// duplicate keys) sees the text.
class StructureChecker : public nlohmann::json_sax<Json> {
  public:
    explicit StructureChecker(const std::string& source) : source_(source) {}

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }

    bool start_object(std::size_t) override {
        enter();
        keys_of_open_objects_.emplace_back();
        return true;
    }
    bool key(string_t& key) override {
        if (!keys_of_open_objects_.back().insert(key).second) {
            fail(ErrorCode::kCorruptData, "{}: duplicate key '{}' in one JSON object", source_,
                 key);
        }
        return true;
    }
    bool end_object() override {
        keys_of_open_objects_.pop_back();
        --depth_;
        return true;
    }
    bool start_array(std::size_t) override {
        enter();
        return true;
    }
    bool end_array() override {
        --depth_;
        return true;
    }
    bool parse_error(std::size_t, const std::string&,
                     const nlohmann::detail::exception& error) override {
        fail(ErrorCode::kCorruptData, "{}: invalid JSON: {}", source_,
             readable_parser_message(error.what()));
    }

  private:
    void enter() {
        if (++depth_ > kMaxDepth) {
            fail(ErrorCode::kCorruptData, "{}: JSON nested deeper than {} levels", source_,
                 kMaxDepth);
        }
    }

    const std::string& source_;
    std::size_t depth_ = 0;
    std::vector<std::set<std::string, std::less<>>> keys_of_open_objects_;
};

}  // namespace

Json parse_json(std::string_view text, const std::string& source) {
    StructureChecker checker(source);
    Json::sax_parse(text.begin(), text.end(), &checker);
    try {
        return Json::parse(text.begin(), text.end());
    } catch (const Json::exception& error) {  // the checker accepted it, so this is our bug
        fail(ErrorCode::kInternal, "{}: JSON accepted by the checker but not the parser: {}",
             source, error.what());
    }
}

std::optional<std::int64_t> json_to_int64(const Json& value) {
    if (value.is_number_unsigned()) {
        const auto number = value.get<std::uint64_t>();
        if (number > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
        return static_cast<std::int64_t>(number);
    }
    if (value.is_number_integer()) return value.get<std::int64_t>();
    return std::nullopt;
}

std::string describe_json(const Json& value) {
    constexpr std::size_t kMaxLength = 80;
    if (value.is_structured()) return std::string(value.type_name());
    std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (text.size() > kMaxLength) text = text.substr(0, kMaxLength) + "...";
    return text;
}

}  // namespace llmserve::io
