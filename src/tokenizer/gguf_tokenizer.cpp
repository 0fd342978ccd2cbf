#include "tokenizer/gguf_tokenizer.h"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "common/error.h"

namespace llmserve::tokenizer {
namespace {

using nlohmann::json;

// llama.cpp's token types.
constexpr std::int64_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4;

// tokenizer.ggml.pre names and the split regexes llama.cpp applies for them, in order (each
// splits the pieces the previous ones left, keeping matches and the text between them).
struct PreTokenizer {
    std::string_view name;
    std::vector<std::string_view> regexes;  // empty: GPT-2's own (ByteLevel with use_regex)
};

constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::vector<PreTokenizer>& pre_tokenizers() {
    static const std::vector<PreTokenizer> table = {
        {"gpt-2", {}},
        {"gpt2", {}},
        {"llama3", {kLlama3Regex}},
        {"llama-bpe", {kLlama3Regex}},
        {"qwen2", {kQwen2Regex}},
        {"default",
         {R"([\p{P}\$\+<=>\^~\|]+)",
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))", R"(\p{N}+)",
          R"([0-9][0-9][0-9])"}},
    };
    return table;
}

json byte_level_pre_tokenizer(const io::GgufFile& file) {
    const std::string pre = file.optional_string("tokenizer.ggml.pre").value_or("default");
    const auto& table = pre_tokenizers();
    const auto it = std::find_if(table.begin(), table.end(),
                                 [&](const PreTokenizer& p) { return p.name == pre; });
    if (it == table.end()) {
        std::string known;
        for (const auto& p : table) known += (known.empty() ? "" : ", ") + std::string(p.name);
        fail(ErrorCode::kUnsupported,
             "{}: metadata 'tokenizer.ggml.pre' is '{}', a pre-tokenizer llmserve does not know "
             "(known: {})",
             file.source, pre, known);
    }
    if (it->regexes.empty())
        return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    json steps = json::array();
    for (const auto regex : it->regexes)
        steps.push_back({{"type", "Split"},
                         {"pattern", {{"Regex", std::string(regex)}}},
                         {"behavior", "Isolated"},
                         {"invert", false}});
    steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}});
    return {{"type", "Sequence"}, {"pretokenizers", steps}};
}

// SentencePiece-style merges: every split of a normal piece into two pieces of the vocabulary,
// ranked by the merged piece's score (highest first), as llama.cpp merges the best-scoring pair.
json merges_from_scores(const std::vector<std::string>& tokens,
                        const std::vector<std::int64_t>& types, const std::vector<double>& scores) {
    std::unordered_map<std::string_view, std::size_t> ids;
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (types[i] == kNormal || types[i] == kUserDefined) ids.emplace(tokens[i], i);
    struct Merge {
        double score;
        std::size_t merged;
        std::size_t split;
    };
    std::vector<Merge> merges;
    for (std::size_t id = 0; id < tokens.size(); ++id) {
        if (types[id] != kNormal) continue;
        const std::string_view piece = tokens[id];
        for (std::size_t at = 1; at < piece.size(); ++at) {
            if ((static_cast<unsigned char>(piece[at]) & 0xc0) == 0x80) continue;  // mid-character
            if (ids.contains(piece.substr(0, at)) && ids.contains(piece.substr(at)))
                merges.push_back({scores[id], id, at});
        }
    }
    std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
        return a.score != b.score ? a.score > b.score : a.merged < b.merged;
    });
    json out = json::array();
    for (const Merge& m : merges) {
        const std::string& piece = tokens[m.merged];
        out.push_back(piece.substr(0, m.split) + " " + piece.substr(m.split));
    }
    return out;
}

}  // namespace

std::string gguf_tokenizer_json(const io::GgufFile& file) {
    const std::string model = file.string("tokenizer.ggml.model");
    const std::vector<std::string> tokens = file.strings("tokenizer.ggml.tokens");
    std::vector<std::int64_t> types(tokens.size(), kNormal);
    if (file.find("tokenizer.ggml.token_type") != nullptr) {
        types = file.integers("tokenizer.ggml.token_type");
        if (types.size() != tokens.size())
            fail(ErrorCode::kCorruptData,
                 "{}: metadata 'tokenizer.ggml.token_type' has {} entries for {} tokens",
                 file.source, types.size(), tokens.size());
    }
    json vocab = json::object();
    json added = json::array();
    for (std::size_t id = 0; id < tokens.size(); ++id) {
        if (vocab.contains(tokens[id]))
            fail(ErrorCode::kCorruptData, "{}: token '{}' appears twice (ids {} and {})",
                 file.source, tokens[id], vocab[tokens[id]].get<std::size_t>(), id);
        vocab[tokens[id]] = id;
        const std::int64_t type = types[id];
        if (type == kControl || type == kUnknown || type == kUserDefined)
            added.push_back({{"id", id},
                             {"content", tokens[id]},
                             {"single_word", false},
                             {"lstrip", false},
                             {"rstrip", false},
                             {"normalized", false},
                             {"special", type != kUserDefined}});
    }
    auto token_id = [&](std::string_view name) -> std::optional<std::size_t> {
        const auto id = file.optional_integer(fmt::format("tokenizer.ggml.{}", name));
        if (!id) return std::nullopt;
        if (*id < 0 || static_cast<std::size_t>(*id) >= tokens.size())
            fail(ErrorCode::kCorruptData,
                 "{}: metadata 'tokenizer.ggml.{}' is {}, not a token of "
                 "the {}-token vocabulary",
                 file.source, name, *id, tokens.size());
        return static_cast<std::size_t>(*id);
    };
    const auto bos = token_id("bos_token_id");
    token_id("eos_token_id");  // checked here; tokenizer_from_gguf passes it on by name
    const auto unknown = token_id("unknown_token_id");

    json tj;
    tj["version"] = "1.0";
    tj["added_tokens"] = added;
    tj["normalizer"] = nullptr;
    tj["pre_tokenizer"] = nullptr;
    bool add_bos = false;
    if (model == "gpt2") {
        tj["model"] = {{"type", "BPE"},
                       {"vocab", vocab},
                       {"merges", file.find("tokenizer.ggml.merges") != nullptr
                                      ? json(file.strings("tokenizer.ggml.merges"))
                                      : json::array()},
                       {"byte_fallback", false},
                       {"ignore_merges", false}};
        tj["pre_tokenizer"] = byte_level_pre_tokenizer(file);
        tj["decoder"] = {{"type", "ByteLevel"}};
        add_bos = file.optional_bool("tokenizer.ggml.add_bos_token").value_or(false);
    } else if (model == "llama") {
        const std::vector<double> scores = file.numbers("tokenizer.ggml.scores");
        if (scores.size() != tokens.size())
            fail(ErrorCode::kCorruptData,
                 "{}: metadata 'tokenizer.ggml.scores' has {} entries for {} tokens", file.source,
                 scores.size(), tokens.size());
        tj["model"] = {{"type", "BPE"},
                       {"vocab", vocab},
                       {"merges", merges_from_scores(tokens, types, scores)},
                       {"byte_fallback", true},
                       {"fuse_unk", true},
                       {"ignore_merges", false}};
        if (unknown) tj["model"]["unk_token"] = tokens[*unknown];
        tj["normalizer"] = {
            {"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "\u2581"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
        tj["decoder"] = {
            {"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
        add_bos = file.optional_bool("tokenizer.ggml.add_bos_token").value_or(true);
    } else {
        fail(ErrorCode::kUnsupported,
             "{}: metadata 'tokenizer.ggml.model' is '{}', which llmserve does not support "
             "(supported: gpt2, llama)",
             file.source, model);
    }
    if (add_bos && bos) {
        const std::string& name = tokens[*bos];
        tj["post_processor"] = {
            {"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", name}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair", json::array()},
            {"special_tokens", {{name, {{"id", name}, {"ids", {*bos}}, {"tokens", {name}}}}}}};
    } else {
        tj["post_processor"] = nullptr;
    }
    return tj.dump();
}

Tokenizer tokenizer_from_gguf(const io::GgufFile& file) {
    const std::string text = gguf_tokenizer_json(file);
    json config = json::object();
    const std::vector<std::string> tokens = file.strings("tokenizer.ggml.tokens");
    for (const auto& [key, field] :
         {std::pair{"bos_token_id", "bos_token"}, std::pair{"eos_token_id", "eos_token"}}) {
        const auto id = file.optional_integer(std::string("tokenizer.ggml.") + key);
        if (id && *id >= 0 && static_cast<std::size_t>(*id) < tokens.size())
            config[field] = tokens[static_cast<std::size_t>(*id)];
    }
    return Tokenizer::from_tokenizer_json_text(text, file.source + " (tokenizer metadata)",
                                               config.dump());
}

std::optional<std::string> gguf_chat_template(const io::GgufFile& file) {
    return file.optional_string("tokenizer.chat_template");
}

}  // namespace llmserve::tokenizer
