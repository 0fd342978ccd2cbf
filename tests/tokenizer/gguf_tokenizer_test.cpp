// Tokenizers from GGUF metadata: GPT-2's vocabulary and merges written into a GGUF file encode
// every case of tests/fixtures/tokenizer/encode.jsonl as transformers does; a SentencePiece-style
// ("llama") vocabulary merges by score and falls back to bytes; unknown models and pre-tokenizer
// names are refused by name; every GGUF fixture's tokenizer loads.
#include "tokenizer/gguf_tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "test_support.h"
#include "tests/io/gguf_builder.h"
#include "tests/io/test_support.h"

namespace llmserve::tokenizer {
namespace {

using io::testing::GgufBuilder;
using nlohmann::json;

io::GgufFile parse(const std::vector<std::byte>& bytes) {
    return io::parse_gguf(bytes, "tokenizer.gguf");
}

// GPT-2's tokenizer (the embedded model's vocab.json and merges.txt) as GGUF metadata.
GgufBuilder gpt2_metadata() {
    const auto dir = testing::embedded_model_dir();
    const json vocab = json::parse(std::ifstream(dir / "vocab.json"));
    std::vector<std::string> tokens(vocab.size());
    for (const auto& [token, id] : vocab.items()) tokens.at(id.get<std::size_t>()) = token;
    std::vector<std::int32_t> types(tokens.size(), 1);
    const auto eos = vocab.at("<|endoftext|>").get<std::int32_t>();
    types.at(static_cast<std::size_t>(eos)) = 3;
    std::vector<std::string> merges;
    std::ifstream merges_file(dir / "merges.txt");
    for (std::string line; std::getline(merges_file, line);)
        if (!line.empty() && !line.starts_with("#version")) merges.push_back(line);
    GgufBuilder b;
    b.string("tokenizer.ggml.model", "gpt2");
    b.string("tokenizer.ggml.pre", "gpt-2");
    b.strings("tokenizer.ggml.tokens", tokens);
    b.i32s("tokenizer.ggml.token_type", types);
    b.strings("tokenizer.ggml.merges", merges);
    b.u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(eos));
    b.u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(eos));
    b.string("tokenizer.chat_template", "{{ messages }}");
    return b;
}

TEST(GgufTokenizer, Gpt2MetadataEncodesLikeTransformers) {
    const auto bytes = gpt2_metadata().build();
    const io::GgufFile file = parse(bytes);
    const Tokenizer tok = tokenizer_from_gguf(file);
    EXPECT_EQ(tok.vocab_size(), 50257u);
    EXPECT_EQ(tok.eos_token_id(), tok.token_id("<|endoftext|>"));
    EXPECT_TRUE(tok.is_special(*tok.token_id("<|endoftext|>")));
    int cases = 0;
    for (const json& row :
         testing::read_jsonl(testing::fixtures_dir() / "tokenizer" / "encode.jsonl")) {
        const auto text = row.at("text").get<std::string>();
        SCOPED_TRACE(text);
        const auto ids = tok.encode(text);
        EXPECT_EQ(ids, row.at("ids").get<std::vector<TokenId>>());
        EXPECT_EQ(tok.decode(ids), row.at("decoded").get<std::string>());
        ++cases;
    }
    EXPECT_GT(cases, 0);
    EXPECT_EQ(gguf_chat_template(file), "{{ messages }}");
}

TEST(GgufTokenizer, UnknownPreTokenizerAndModelAreRefusedByName) {
    GgufBuilder pre;
    pre.string("tokenizer.ggml.model", "gpt2");
    pre.string("tokenizer.ggml.pre", "mystery-bpe");
    pre.strings("tokenizer.ggml.tokens", {"a", "b"});
    const auto pre_bytes = pre.build();
    io::testing::expect_error([&] { tokenizer_from_gguf(parse(pre_bytes)); },
                              ErrorCode::kUnsupported,
                              {"tokenizer.gguf", "tokenizer.ggml.pre", "mystery-bpe", "llama-bpe"});
    GgufBuilder model;
    model.string("tokenizer.ggml.model", "bert");
    model.strings("tokenizer.ggml.tokens", {"a", "b"});
    const auto model_bytes = model.build();
    io::testing::expect_error([&] { tokenizer_from_gguf(parse(model_bytes)); },
                              ErrorCode::kUnsupported,
                              {"tokenizer.ggml.model", "'bert'", "gpt2, llama"});
}

TEST(GgufTokenizer, InconsistentArraysAreNamed) {
    GgufBuilder b;
    b.string("tokenizer.ggml.model", "gpt2");
    b.strings("tokenizer.ggml.tokens", {"a", "b", "c"});
    b.i32s("tokenizer.ggml.token_type", {1, 1});
    const auto bytes = b.build();
    io::testing::expect_error([&] { tokenizer_from_gguf(parse(bytes)); }, ErrorCode::kCorruptData,
                              {"tokenizer.ggml.token_type", "2 entries for 3 tokens"});
    GgufBuilder bos;
    bos.string("tokenizer.ggml.model", "gpt2");
    bos.strings("tokenizer.ggml.tokens", {"a", "b"});
    bos.u32("tokenizer.ggml.bos_token_id", 7);
    const auto bos_bytes = bos.build();
    io::testing::expect_error([&] { tokenizer_from_gguf(parse(bos_bytes)); },
                              ErrorCode::kCorruptData, {"tokenizer.ggml.bos_token_id", "7"});
}

// A SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then pieces with
// scores. The best-scoring merges win; characters outside the vocabulary become byte tokens.
TEST(GgufTokenizer, LlamaMetadataMergesByScoreWithByteFallback) {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<std::int32_t> types = {2, 3, 3};
    std::vector<float> scores = {0, 0, 0};
    for (int byte = 0; byte < 256; ++byte) {
        tokens.push_back(fmt::format("<0x{:02X}>", byte));
        types.push_back(6);
        scores.push_back(0);
    }
    const std::vector<std::pair<std::string, float>> pieces = {
        {"\u2581", -1},  {"h", -2},  {"e", -2},        {"l", -2},          {"o", -2},
        {"\u2581h", -3}, {"ll", -4}, {"\u2581he", -5}, {"\u2581hell", -6}, {"lo", -1.5f}};
    for (const auto& [piece, score] : pieces) {
        tokens.push_back(piece);
        types.push_back(1);
        scores.push_back(score);
    }
    GgufBuilder b;
    b.string("tokenizer.ggml.model", "llama");
    b.strings("tokenizer.ggml.tokens", tokens);
    b.i32s("tokenizer.ggml.token_type", types);
    std::string score_bytes =
        GgufBuilder::raw(std::uint32_t{6}) + GgufBuilder::raw(std::uint64_t{scores.size()});
    for (const float s : scores) score_bytes += GgufBuilder::raw(s);
    b.entry("tokenizer.ggml.scores", 9, score_bytes);
    b.u32("tokenizer.ggml.unknown_token_id", 0);
    b.u32("tokenizer.ggml.bos_token_id", 1);
    b.u32("tokenizer.ggml.eos_token_id", 2);
    const auto bytes = b.build();
    const Tokenizer tok = tokenizer_from_gguf(parse(bytes));
    auto id = [&](std::string_view piece) { return *tok.token_id(piece); };
    // "▁hello": "lo" (score -1.5) merges before "ll" (-4), which then cannot form; "▁h" + "e"
    // becomes "▁he" (-5); "▁hell" needs "ll" and never forms. BOS first (add_bos by default).
    EXPECT_EQ(tok.encode("hello"), (std::vector<TokenId>{1, id("\u2581he"), id("l"), id("lo")}));
    // "é" is not a piece: its two UTF-8 bytes become byte tokens.
    EXPECT_EQ(tok.encode("é", false),
              (std::vector<TokenId>{id("\u2581"), id("<0xC3>"), id("<0xA9>")}));
    EXPECT_EQ(tok.decode(tok.encode("hello hé", false)), "hello hé");
}

TEST(GgufTokenizer, EveryFixtureFileHasAWorkingTokenizer) {
    int files = 0;
    for (const auto& dir : llmserve::testing::subdirectories(testing::fixtures_dir() / "gguf")) {
        SCOPED_TRACE(dir.string());
        const Tokenizer tok = Tokenizer::from_directory(dir / "model.gguf");
        const io::GgufMapped mapped = io::open_gguf(dir / "model.gguf");
        EXPECT_EQ(tok.vocab_size(), mapped.gguf.strings("tokenizer.ggml.tokens").size());
        const auto ids = tok.encode("the cat", false);
        EXPECT_FALSE(ids.empty());
        EXPECT_EQ(tok.decode(ids), "the cat");
        ++files;
    }
    EXPECT_GT(files, 0);
}

}  // namespace
}  // namespace llmserve::tokenizer
