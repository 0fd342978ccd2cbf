// libFuzzer target for tokenizer.json loading (seeded from fuzz/corpus/tokenizer_json with small
// byte-level and SentencePiece-style files using every supported component). For arbitrary bytes:
//  - loading fails, if at all, only with llmserve::Error (never a crash, hang or other exception);
//  - a tokenizer that loads encodes sample texts (and the input itself) to ids it knows, decodes
//    them to valid UTF-8, and streaming those ids gives decode()'s text in whole UTF-8 pieces.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

using llmserve::tokenizer::StreamingDetokenizer;
using llmserve::tokenizer::TokenId;
using llmserve::tokenizer::Tokenizer;

void check(bool condition) {
    if (!condition) std::abort();
}

void check_ids(const Tokenizer& tokenizer, const std::vector<TokenId>& ids) {
    for (const TokenId id : ids)
        check(id >= 0 && static_cast<std::size_t>(id) < tokenizer.vocab_size());
    const std::string text = tokenizer.decode(ids);
    check(llmserve::tokenizer::is_valid_utf8(text));
    StreamingDetokenizer detokenizer(tokenizer);
    std::string streamed;
    for (const TokenId id : ids) {
        const std::string piece = detokenizer.push(id);
        check(llmserve::tokenizer::is_valid_utf8(piece));
        streamed += piece;
    }
    check(streamed + detokenizer.finish() == text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    try {
        const Tokenizer tokenizer = Tokenizer::from_tokenizer_json_text(input, "fuzz input");
        for (const std::string_view text :
             {std::string_view("Hello world, it's 12345!"), std::string_view(" a  ab\n\tb "),
              std::string_view("<s>a</s><|eot|>b"),
              std::string_view("\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80"), std::string_view(""),
              input.substr(0, 256)}) {
            check_ids(tokenizer, tokenizer.encode(text, true));
            check_ids(tokenizer, tokenizer.encode(text, false));
            check_ids(tokenizer, tokenizer.encode_ordinary(text));
        }
    } catch (const llmserve::Error&) {
        // Refusing a malformed or unsupported file is the expected outcome.
    }
    return 0;
}
