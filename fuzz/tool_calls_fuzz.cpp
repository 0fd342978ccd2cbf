// split_tool_calls and ToolCallStream on arbitrary replies: nothing throws, a reply without calls
// is all content, each call has a name and arguments that are JSON (or the string the model
// gave), and the stream, fed in pieces cut where the input's first byte says, gives the same
// split as the whole text.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/tool_calls.h"

namespace {

using llmserve::server::ToolCallFormat;
using llmserve::server::ToolCallSplit;
using llmserve::server::ToolCallStream;

void check_format(ToolCallFormat format, std::string_view text, std::size_t piece_size) {
    const ToolCallSplit whole = llmserve::server::split_tool_calls(format, text);
    if (whole.calls.empty() && whole.content != text) std::abort();
    for (const auto& call : whole.calls) {
        if (call.name.empty()) std::abort();
    }
    ToolCallStream stream(format);
    std::string content;
    for (std::size_t i = 0; i < text.size(); i += piece_size) {
        content += stream.feed(text.substr(i, piece_size));
    }
    const ToolCallSplit rest = stream.finish();
    content += rest.content;
    if (content != whole.content || rest.calls.size() != whole.calls.size()) std::abort();
    for (std::size_t i = 0; i < whole.calls.size(); ++i) {
        if (rest.calls[i].name != whole.calls[i].name ||
            rest.calls[i].arguments != whole.calls[i].arguments) {
            std::abort();
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t piece_size = 1 + data[0] % 7;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    check_format(ToolCallFormat::kHermes, text, piece_size);
    check_format(ToolCallFormat::kLlama3Json, text, piece_size);
    check_format(ToolCallFormat::kNone, text, piece_size);
    return 0;
}
