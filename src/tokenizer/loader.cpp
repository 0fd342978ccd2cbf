// Reading tokenizer files into a TokenizerState: tokenizer.json (Hugging Face `tokenizers`) or
// vocab.json + merges.txt (OpenAI / transformers' GPT2Tokenizer).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "common/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/string_hash.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_state.h"

namespace llmserve::tokenizer {
namespace {

using nlohmann::json;

// Ids index a dense table, so a hostile id must not make it huge; real vocabularies stay far below.
constexpr std::int64_t kMaxTokenId = (1 << 22) - 1;

// What the two file formats share, before ids are resolved and checked.
struct VocabEntry {
    std::string text;  // spelled in the byte-level alphabet, e.g. "Ġthe"
    TokenId id;
};

struct MergeRule {
    std::string left;
    std::string right;
    std::size_t position;  // index in model.merges, or line number in merges.txt
};

struct AddedTokenSpec {
    std::string content;
    TokenId id;
    bool special;
};

struct TokenizerSpec {
    std::string source;  // the file(s), for error messages
    bool merges_from_text_file = false;
    std::vector<VocabEntry> vocab;
    std::vector<MergeRule> merges;
    std::vector<AddedTokenSpec> added;
};

// A JSON value shortened for error messages.
std::string brief(const json& value) {
    std::string text = value.dump();
    if (text.size() > 40) text = text.substr(0, 37) + "...";
    return text;
}

std::string read_file(const std::filesystem::path& path) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
        fail(ErrorCode::kNotFound, "tokenizer file '{}' does not exist", path.string());
    }
    if (!std::filesystem::is_regular_file(path, error)) {
        fail(ErrorCode::kNotFound, "tokenizer file '{}' is not a regular file", path.string());
    }
    std::ifstream stream(path, std::ios::binary);
    std::ostringstream content;
    content << stream.rdbuf();
    if (!stream || !content) {
        fail(ErrorCode::kCorruptData, "tokenizer file '{}' could not be read", path.string());
    }
    return std::move(content).str();
}

json parse_json(std::string_view text, std::string_view source) {
    try {
        return json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        fail(ErrorCode::kCorruptData, "{}: invalid JSON: {}", source, e.what());
    }
}

bool is_token_id(const json& value) {
    return value.is_number_integer() && value.get<std::int64_t>() >= 0 &&
           value.get<std::int64_t>() <= kMaxTokenId;
}

[[noreturn]] void fail_token_id(const json& value, std::string_view source,
                                std::string_view field) {
    fail(ErrorCode::kCorruptData, "{}: {} must be a token id in 0..{}, got {}", source, field,
         kMaxTokenId, brief(value));
}

std::vector<VocabEntry> parse_vocab(const json& vocab, std::string_view source,
                                    std::string_view field) {
    if (!vocab.is_object()) {
        fail(ErrorCode::kCorruptData, "{}: {} must be an object of token -> id, got {}", source,
             field, brief(vocab));
    }
    std::vector<VocabEntry> entries;
    entries.reserve(vocab.size());
    for (const auto& [text, id] : vocab.items()) {
        if (!is_token_id(id))
            fail_token_id(id, source, fmt::format("{}[{}]", field, json(text).dump()));
        entries.push_back({text, static_cast<TokenId>(id.get<std::int64_t>())});
    }
    return entries;
}

std::string merge_location(const TokenizerSpec& spec, std::size_t position) {
    return spec.merges_from_text_file ? fmt::format("line {}", position)
                                      : fmt::format("model.merges[{}]", position);
}

// "a b": exactly one space, since the byte-level alphabet spells a space as "Ġ".
MergeRule split_merge_line(std::string_view line, std::size_t position, const TokenizerSpec& spec) {
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
        fail(ErrorCode::kCorruptData, "{} {}: expected two tokens separated by one space, got '{}'",
             spec.source, merge_location(spec, position), line);
    }
    return {std::string(line.substr(0, space)), std::string(line.substr(space + 1)), position};
}

bool is_absent(const json& object, std::string_view key) {
    const auto it = object.find(key);
    return it == object.end() || it->is_null();
}

bool flag(const json& object, std::string_view key, std::string_view source,
          std::string_view field) {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return false;
    if (!it->is_boolean()) {
        fail(ErrorCode::kCorruptData, "{}: {}.{} must be true or false, got {}", source, field, key,
             brief(*it));
    }
    return it->get<bool>();
}

// Anything but GPT-2's byte-level BPE would silently give other tokens, so it is refused.
void check_gpt2_configuration(const json& root, std::string_view source) {
    if (!is_absent(root, "normalizer")) {
        fail(ErrorCode::kUnsupported, "{}: normalizer {} is not supported (GPT-2 has none)", source,
             brief(root["normalizer"]));
    }
    if (!is_absent(root, "pre_tokenizer")) {
        const json& pre = root["pre_tokenizer"];
        if (!pre.is_object() || pre.value("type", json()) != "ByteLevel" ||
            flag(pre, "add_prefix_space", source, "pre_tokenizer") ||
            (pre.contains("use_regex") && !flag(pre, "use_regex", source, "pre_tokenizer"))) {
            fail(ErrorCode::kUnsupported,
                 "{}: pre_tokenizer {} is not supported (expected GPT-2's ByteLevel with "
                 "add_prefix_space false and use_regex true)",
                 source, brief(pre));
        }
    }
    const json& model = root["model"];
    if (!is_absent(model, "type") && model["type"] != "BPE") {
        fail(ErrorCode::kUnsupported, "{}: model.type {} is not supported (expected \"BPE\")",
             source, brief(model["type"]));
    }
    for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"}) {
        if (!is_absent(model, key) && model[key] != "") {
            fail(ErrorCode::kUnsupported, "{}: model.{} {} is not supported", source, key,
                 brief(model[key]));
        }
    }
    if (flag(model, "ignore_merges", source, "model")) {
        fail(ErrorCode::kUnsupported, "{}: model.ignore_merges true is not supported", source);
    }
}

TokenizerSpec parse_tokenizer_json(std::string_view text, std::string_view source) {
    const json root = parse_json(text, source);
    if (!root.is_object()) {
        fail(ErrorCode::kCorruptData, "{}: expected a JSON object at the top level, got {}", source,
             brief(root));
    }
    if (!root.contains("model") || !root["model"].is_object()) {
        fail(ErrorCode::kCorruptData, "{}: missing the object 'model'", source);
    }
    check_gpt2_configuration(root, source);
    const json& model = root["model"];

    TokenizerSpec spec;
    spec.source = source;
    if (!model.contains("vocab")) fail(ErrorCode::kCorruptData, "{}: missing model.vocab", source);
    spec.vocab = parse_vocab(model["vocab"], source, "model.vocab");

    if (!model.contains("merges") || !model["merges"].is_array()) {
        fail(ErrorCode::kCorruptData, "{}: model.merges must be an array", source);
    }
    const json& merges = model["merges"];
    spec.merges.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
        const json& merge = merges[i];
        if (merge.is_string()) {
            spec.merges.push_back(split_merge_line(merge.get_ref<const std::string&>(), i, spec));
        } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                   merge[1].is_string()) {
            spec.merges.push_back({merge[0].get<std::string>(), merge[1].get<std::string>(), i});
        } else {
            fail(ErrorCode::kCorruptData,
                 "{}: model.merges[{}] must be \"a b\" or [\"a\", \"b\"], got {}", source, i,
                 brief(merge));
        }
    }

    if (!is_absent(root, "added_tokens")) {
        const json& added = root["added_tokens"];
        if (!added.is_array()) {
            fail(ErrorCode::kCorruptData, "{}: added_tokens must be an array", source);
        }
        for (std::size_t i = 0; i < added.size(); ++i) {
            const json& token = added[i];
            const std::string field = fmt::format("added_tokens[{}]", i);
            if (!token.is_object() || !token.contains("content") || !token["content"].is_string() ||
                token["content"].get_ref<const std::string&>().empty() || !token.contains("id")) {
                fail(ErrorCode::kCorruptData,
                     "{}: {} must be an object with a non-empty 'content' and an 'id', got {}",
                     source, field, brief(token));
            }
            for (const char* option : {"lstrip", "rstrip", "single_word"}) {
                if (flag(token, option, source, field)) {
                    fail(ErrorCode::kUnsupported, "{}: {} ({}) sets {}, which is not supported",
                         source, field, token["content"].dump(), option);
                }
            }
            if (!is_token_id(token["id"])) fail_token_id(token["id"], source, field + ".id");
            spec.added.push_back({token["content"].get<std::string>(),
                                  static_cast<TokenId>(token["id"].get<std::int64_t>()),
                                  flag(token, "special", source, field)});
        }
    }
    return spec;
}

TokenizerSpec parse_vocab_and_merges(std::string_view vocab_text, std::string_view vocab_source,
                                     std::string_view merges_text, std::string_view merges_source) {
    TokenizerSpec spec;
    spec.source = merges_source;
    spec.merges_from_text_file = true;
    spec.vocab = parse_vocab(parse_json(vocab_text, vocab_source), vocab_source, "vocabulary");

    // As HF's BPE::read_file: "#version" lines are skipped, every other line is one merge.
    std::size_t line_start = 0;
    for (std::size_t line_number = 1; line_start < merges_text.size(); ++line_number) {
        std::size_t line_end = merges_text.find('\n', line_start);
        if (line_end == std::string_view::npos) line_end = merges_text.size();
        std::string_view line = merges_text.substr(line_start, line_end - line_start);
        line_start = line_end + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.starts_with("#version")) continue;
        spec.merges.push_back(split_merge_line(line, line_number, spec));
    }
    // Later errors concern how the two files fit together: name both.
    spec.source = fmt::format("{} + {}", vocab_source, merges_source);

    // GPT2Tokenizer's default bos/eos/unk token.
    constexpr std::string_view kEndOfText = "<|endoftext|>";
    for (const VocabEntry& entry : spec.vocab) {
        if (entry.text == kEndOfText) spec.added.push_back({entry.text, entry.id, true});
    }
    return spec;
}

class StateBuilder {
  public:
    explicit StateBuilder(TokenizerSpec spec) : spec_(std::move(spec)) {}

    std::shared_ptr<const TokenizerState> build() {
        index_vocabulary();
        auto state = std::make_shared<TokenizerState>(resolve_byte_tokens(), resolve_merges());
        fill_token_table(*state);
        index_by_bytes(*state);
        for (const AddedTokenSpec& added : spec_.added)
            state->added_tokens.push_back({added.content, added.id});
        return state;
    }

  private:
    // Checks ids are unique and every token is spelled in the byte-level alphabet (an added
    // token is exempt: it stands for its literal content).
    void index_vocabulary() {
        std::int64_t max_id = -1;
        for (const AddedTokenSpec& added : spec_.added) {
            if (const auto [it, inserted] = added_by_id_.try_emplace(added.id, &added);
                !inserted && it->second->content != added.content) {
                fail(ErrorCode::kCorruptData, "{}: added tokens {} and {} share the id {}",
                     spec_.source, json(it->second->content).dump(), json(added.content).dump(),
                     added.id);
            }
            max_id = std::max<std::int64_t>(max_id, added.id);
        }
        std::unordered_map<TokenId, const VocabEntry*> vocab_by_id;
        vocab_ids_.reserve(spec_.vocab.size());
        for (const VocabEntry& entry : spec_.vocab) {
            if (const auto [it, inserted] = vocab_by_id.try_emplace(entry.id, &entry); !inserted) {
                fail(ErrorCode::kCorruptData, "{}: tokens {} and {} share the id {}", spec_.source,
                     json(it->second->text).dump(), json(entry.text).dump(), entry.id);
            }
            vocab_ids_.insert_or_assign(entry.text, entry.id);
            max_id = std::max<std::int64_t>(max_id, entry.id);
            const auto added = added_by_id_.find(entry.id);
            if (added != added_by_id_.end()) {
                if (added->second->content != entry.text) {
                    fail(ErrorCode::kCorruptData,
                         "{}: added token {} has id {}, which the vocabulary gives to {}",
                         spec_.source, json(added->second->content).dump(), entry.id,
                         json(entry.text).dump());
                }
                continue;
            }
            std::optional<std::string> bytes = vocab_text_to_bytes(entry.text);
            if (!bytes) {
                fail(ErrorCode::kCorruptData,
                     "{}: token {} (id {}) is not spelled in GPT-2's byte-level alphabet",
                     spec_.source, json(entry.text).dump(), entry.id);
            }
            vocab_bytes_.emplace_back(entry.id, std::move(*bytes));
        }
        for (const AddedTokenSpec& added : spec_.added) {
            const auto it = vocab_ids_.find(added.content);
            if (it != vocab_ids_.end() && it->second != added.id) {
                fail(ErrorCode::kCorruptData,
                     "{}: added token {} has id {} but the vocabulary gives it id {}", spec_.source,
                     json(added.content).dump(), added.id, it->second);
            }
        }
        vocab_size_ = static_cast<std::size_t>(max_id + 1);
    }

    TokenId vocab_id(std::string_view text, const MergeRule& rule, std::string_view verb) const {
        const auto it = vocab_ids_.find(text);
        if (it == vocab_ids_.end()) {
            fail(ErrorCode::kCorruptData,
                 "{}: merge {} {} the token {}, which is not in the vocabulary", spec_.source,
                 merge_location(spec_, rule.position), verb, json(std::string(text)).dump());
        }
        return it->second;
    }

    // Every byte needs a token, or some text could not be encoded.
    std::array<TokenId, 256> resolve_byte_tokens() const {
        std::array<TokenId, 256> byte_ids{};
        for (unsigned byte = 0; byte < 256; ++byte) {
            const std::string text = bytes_to_vocab_text(std::string(1, static_cast<char>(byte)));
            const auto it = vocab_ids_.find(text);
            if (it == vocab_ids_.end()) {
                fail(ErrorCode::kCorruptData,
                     "{}: the vocabulary lacks {}, the token for byte 0x{:02X}", spec_.source,
                     json(text).dump(), byte);
            }
            byte_ids[byte] = it->second;
        }
        return byte_ids;
    }

    MergeTable resolve_merges() const {
        MergeTable merges(spec_.merges.size());
        for (std::size_t rank = 0; rank < spec_.merges.size(); ++rank) {
            const MergeRule& rule = spec_.merges[rank];
            const TokenId left = vocab_id(rule.left, rule, "names");
            const TokenId right = vocab_id(rule.right, rule, "names");
            const TokenId merged = vocab_id(rule.left + rule.right, rule, "produces");
            // A repeated pair takes its last rank, as HF's map construction does.
            merges.insert_or_assign(left, right,
                                    MergeResult{static_cast<std::int32_t>(rank), merged});
        }
        return merges;
    }

    void fill_token_table(TokenizerState& state) const {
        std::vector<std::string_view> bytes_by_id(vocab_size_);
        std::vector<TokenKind> kinds(vocab_size_, TokenKind::kMissing);
        for (const auto& [id, bytes] : vocab_bytes_) {
            bytes_by_id[id] = bytes;
            kinds[id] = TokenKind::kRegular;
        }
        for (const auto& [id, added] : added_by_id_) {
            bytes_by_id[id] = added->content;
            kinds[id] = added->special ? TokenKind::kSpecial : TokenKind::kAdded;
        }
        state.token_offsets.reserve(vocab_size_ + 1);
        for (const std::string_view bytes : bytes_by_id) {
            state.token_offsets.push_back(static_cast<std::uint32_t>(state.token_arena.size()));
            state.token_arena.append(bytes);
        }
        state.token_offsets.push_back(static_cast<std::uint32_t>(state.token_arena.size()));
        state.token_kinds = std::move(kinds);
    }

    // The indexes token_id() searches: ids sorted by their bytes, regular and added apart.
    static void index_by_bytes(TokenizerState& state) {
        for (std::size_t id = 0; id < state.token_kinds.size(); ++id) {
            switch (state.token_kinds[id]) {
                case TokenKind::kMissing:
                    break;
                case TokenKind::kRegular:
                    state.regular_ids_by_bytes.push_back(static_cast<TokenId>(id));
                    break;
                case TokenKind::kAdded:
                case TokenKind::kSpecial:
                    state.added_ids_by_content.push_back(static_cast<TokenId>(id));
                    break;
            }
        }
        for (auto* ids : {&state.regular_ids_by_bytes, &state.added_ids_by_content}) {
            std::stable_sort(ids->begin(), ids->end(), [&state](TokenId a, TokenId b) {
                return state.token_bytes(a) < state.token_bytes(b);
            });
            ids->shrink_to_fit();
        }
    }

    TokenizerSpec spec_;
    std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>> vocab_ids_;
    std::unordered_map<TokenId, const AddedTokenSpec*> added_by_id_;
    std::vector<std::pair<TokenId, std::string>> vocab_bytes_;
    std::size_t vocab_size_ = 0;
};

}  // namespace

Tokenizer Tokenizer::from_tokenizer_json_text(std::string_view json_text, std::string_view source) {
    return Tokenizer(StateBuilder(parse_tokenizer_json(json_text, source)).build());
}

Tokenizer Tokenizer::from_tokenizer_json(const std::filesystem::path& file) {
    return from_tokenizer_json_text(read_file(file), file.string());
}

Tokenizer Tokenizer::from_vocab_and_merges(const std::filesystem::path& vocab,
                                           const std::filesystem::path& merges) {
    const std::string vocab_text = read_file(vocab);
    const std::string merges_text = read_file(merges);
    return Tokenizer(StateBuilder(parse_vocab_and_merges(vocab_text, vocab.string(), merges_text,
                                                         merges.string()))
                         .build());
}

Tokenizer Tokenizer::from_directory(const std::filesystem::path& dir) {
    std::error_code error;
    if (!std::filesystem::is_directory(dir, error)) {
        fail(ErrorCode::kNotFound, "tokenizer directory '{}' does not exist", dir.string());
    }
    if (std::filesystem::exists(dir / "tokenizer.json", error)) {
        return from_tokenizer_json(dir / "tokenizer.json");
    }
    if (std::filesystem::exists(dir / "vocab.json", error) &&
        std::filesystem::exists(dir / "merges.txt", error)) {
        return from_vocab_and_merges(dir / "vocab.json", dir / "merges.txt");
    }
    fail(ErrorCode::kNotFound,
         "tokenizer directory '{}' has neither tokenizer.json nor "
         "vocab.json + merges.txt",
         dir.string());
}

}  // namespace llmserve::tokenizer
