// libFuzzer target for the tokenizer. For arbitrary bytes:
//  - encode()/encode_ordinary() never crash, and decode() gives the input back (after the
//    documented U+FFFD repair when the input is not valid UTF-8);
//  - streaming those ids, or arbitrary ids built from the bytes, gives decode()'s text in whole
//    UTF-8 pieces;
//  - parsing the bytes as tokenizer.json fails, if at all, only with llmserve::Error.
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

const Tokenizer& gpt2_tokenizer() {
    static const Tokenizer tokenizer =
        Tokenizer::from_directory(LLMSERVE_SOURCE_DIR "/models/gpt2-brown-mini");
    return tokenizer;
}

void check(bool condition) {
    if (!condition) std::abort();
}

void check_streaming(const Tokenizer& tokenizer, const std::vector<TokenId>& ids) {
    const std::string full = tokenizer.decode(ids);
    StreamingDetokenizer detokenizer(tokenizer);
    std::string emitted;
    for (const TokenId id : ids) {
        const std::string piece = detokenizer.push(id);
        check(llmserve::tokenizer::is_valid_utf8(piece));
        emitted += piece;
        check(std::string_view(full).starts_with(emitted));
    }
    emitted += detokenizer.finish();
    check(emitted == full);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const Tokenizer& tokenizer = gpt2_tokenizer();
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    std::string expected_text;
    llmserve::tokenizer::append_utf8_lossy(input, expected_text);
    for (const std::vector<TokenId>& ids :
         {tokenizer.encode(input), tokenizer.encode_ordinary(input)}) {
        check(tokenizer.decode(ids) == expected_text);
        check_streaming(tokenizer, ids);
    }

    // Every two bytes name a token: exercises decoding of byte sequences no text produces.
    std::vector<TokenId> arbitrary_ids;
    for (std::size_t i = 0; i + 1 < size; i += 2) {
        arbitrary_ids.push_back(
            static_cast<TokenId>((data[i] << 8 | data[i + 1]) % tokenizer.vocab_size()));
    }
    check_streaming(tokenizer, arbitrary_ids);

    try {
        const Tokenizer parsed = Tokenizer::from_tokenizer_json_text(input, "fuzz input");
        check_streaming(parsed, parsed.encode(input));
    } catch (const llmserve::Error&) {
        // Rejecting malformed input is the expected outcome.
    }
    return 0;
}
