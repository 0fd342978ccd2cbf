// Reading tokenizer files into a TokenizerState: tokenizer.json (Hugging Face `tokenizers`, with
// tokenizer_config.json when there is one) or vocab.json + merges.txt (OpenAI / transformers'
// GPT2Tokenizer).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "common/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/components.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/string_hash.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_state.h"
#include "tokenizer/utf8.h"

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
    bool normalized = true;  // matched in the normalized text (HF's default)
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
};

// What tokenizer_config.json says that the tokenizer uses.
struct ConfigSpec {
    std::string source;
    std::optional<std::string> bos_token;
    std::optional<std::string> eos_token;
    std::string tokenizer_class;
    std::optional<bool> add_bos_token;
    std::optional<bool> add_eos_token;
};

struct TokenizerSpec {
    std::string source;  // the file(s), for error messages
    bool merges_from_text_file = false;
    std::vector<VocabEntry> vocab;
    std::vector<MergeRule> merges;
    std::vector<AddedTokenSpec> added;
    // The model's options (BPE).
    std::optional<std::string> unk_token;
    bool byte_fallback = false;
    bool fuse_unk = false;
    bool ignore_merges = false;
    // The other components; GPT-2's vocab.json + merges.txt is byte-level with its own regex.
    std::vector<NormalizerStep> normalizer;
    PreTokenizerSpec pre_tokenizer{{{PreTokenizerStep::Kind::kGpt2Regex}}, true};
    DecoderChain decoder;
    PostProcessorTokens post_processor;
    ConfigSpec config;
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

// Anything but BPE without dropout or word affixes would silently give other tokens.
void parse_model_options(const json& model, std::string_view source, TokenizerSpec& spec) {
    if (!is_absent(model, "type") && model["type"] != "BPE") {
        fail(ErrorCode::kUnsupported,
             "{}: model.type {} is not supported (expected \"BPE\"; WordPiece, WordLevel and "
             "Unigram models are not implemented)",
             source, brief(model["type"]));
    }
    if (!is_absent(model, "dropout") && model["dropout"] != 0.0) {
        fail(ErrorCode::kUnsupported, "{}: model.dropout {} is not supported", source,
             brief(model["dropout"]));
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        if (!is_absent(model, key) && model[key] != "") {
            fail(ErrorCode::kUnsupported, "{}: model.{} {} is not supported", source, key,
                 brief(model[key]));
        }
    }
    if (!is_absent(model, "unk_token")) {
        if (!model["unk_token"].is_string()) {
            fail(ErrorCode::kCorruptData, "{}: model.unk_token must be a string, got {}", source,
                 brief(model["unk_token"]));
        }
        spec.unk_token = model["unk_token"].get<std::string>();
    }
    spec.byte_fallback = flag(model, "byte_fallback", source, "model");
    spec.fuse_unk = flag(model, "fuse_unk", source, "model");
    spec.ignore_merges = flag(model, "ignore_merges", source, "model");
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
    const json& model = root["model"];

    TokenizerSpec spec;
    spec.source = source;
    parse_model_options(model, source, spec);
    spec.normalizer = parse_normalizer(root, source);
    spec.pre_tokenizer = parse_pre_tokenizer(root, source);
    spec.decoder = parse_decoder(root, spec.pre_tokenizer.byte_level, source);
    spec.post_processor = parse_post_processor(root, source);
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
            if (!is_token_id(token["id"])) fail_token_id(token["id"], source, field + ".id");
            AddedTokenSpec added_token{token["content"].get<std::string>(),
                                       static_cast<TokenId>(token["id"].get<std::int64_t>()),
                                       flag(token, "special", source, field)};
            added_token.normalized =
                is_absent(token, "normalized") || flag(token, "normalized", source, field);
            added_token.lstrip = flag(token, "lstrip", source, field);
            added_token.rstrip = flag(token, "rstrip", source, field);
            added_token.single_word = flag(token, "single_word", source, field);
            spec.added.push_back(std::move(added_token));
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
        if (entry.text == kEndOfText) {
            spec.added.push_back({entry.text, entry.id, true});
            spec.config.bos_token = spec.config.eos_token = entry.text;
        }
    }
    return spec;
}

// bos_token / eos_token: a string, an AddedToken dict with "content", or null.
std::optional<std::string> config_token(const json& config, std::string_view key,
                                        std::string_view source) {
    if (is_absent(config, key)) return std::nullopt;
    const json& value = config[key];
    if (value.is_string()) return value.get<std::string>();
    if (value.is_object() && value.contains("content") && value["content"].is_string())
        return value["content"].get<std::string>();
    fail(ErrorCode::kCorruptData,
         "{}: {} must be a token string or an object with a string 'content', got {}", source, key,
         brief(value));
}

ConfigSpec parse_tokenizer_config(std::string_view text, std::string_view source) {
    const json config = parse_json(text, source);
    if (!config.is_object()) {
        fail(ErrorCode::kCorruptData, "{}: expected a JSON object at the top level, got {}", source,
             brief(config));
    }
    ConfigSpec spec;
    spec.source = source;
    spec.bos_token = config_token(config, "bos_token", source);
    spec.eos_token = config_token(config, "eos_token", source);
    if (!is_absent(config, "tokenizer_class")) {
        if (!config["tokenizer_class"].is_string()) {
            fail(ErrorCode::kCorruptData, "{}: tokenizer_class must be a string, got {}", source,
                 brief(config["tokenizer_class"]));
        }
        spec.tokenizer_class = config["tokenizer_class"].get<std::string>();
    }
    if (!is_absent(config, "add_bos_token"))
        spec.add_bos_token = flag(config, "add_bos_token", source, "tokenizer_config");
    if (!is_absent(config, "add_eos_token"))
        spec.add_eos_token = flag(config, "add_eos_token", source, "tokenizer_config");
    return spec;
}

// transformers' Llama and Gemma tokenizer classes rebuild the post-processor from add_bos_token
// (default true) and add_eos_token (default false); other classes keep tokenizer.json's.
bool rebuilds_post_processor(std::string_view tokenizer_class) {
    for (const std::string_view name :
         {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast",
          "GemmaTokenizer", "GemmaTokenizerFast"}) {
        if (tokenizer_class == name) return true;
    }
    return false;
}

class StateBuilder {
  public:
    explicit StateBuilder(TokenizerSpec spec) : spec_(std::move(spec)) {}

    std::shared_ptr<const TokenizerState> build() {
        index_vocabulary();
        auto state = std::make_shared<TokenizerState>(
            spec_.pre_tokenizer.byte_level ? resolve_byte_tokens() : resolve_char_tokens(),
            resolve_merges(), whole_pieces());
        state->byte_level = spec_.pre_tokenizer.byte_level;
        state->decoder = std::move(spec_.decoder);
        fill_token_table(*state);
        index_by_bytes(*state);
        state->normalizer = Normalizer(std::move(spec_.normalizer));
        state->fast_pre_tokenizer =
            fast_pre_tokenizer_of(spec_.pre_tokenizer.steps, state->fast_digit_limit);
        state->pre_tokenizer = PreTokenizer(std::move(spec_.pre_tokenizer.steps));
        build_added_token_matchers(*state);
        resolve_special_tokens(*state);
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
            if (!spec_.pre_tokenizer.byte_level) {
                vocab_bytes_.emplace_back(entry.id, entry.text);  // the spelling is the token
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
    InitialSymbols resolve_byte_tokens() const {
        InitialSymbols symbols;
        std::array<TokenId, 256>& byte_ids = symbols.byte_ids;
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
        return symbols;
    }

    // A SentencePiece-style vocabulary starts from each character's token, with <0xNN> tokens
    // for byte fallback.
    InitialSymbols resolve_char_tokens() const {
        InitialSymbols symbols;
        symbols.byte_level = false;
        symbols.byte_ids.fill(-1);
        symbols.fallback_ids.fill(-1);
        for (const auto& [id, text] : vocab_bytes_) {
            if (text.empty() || next_utf8_sequence(text, 0).length != text.size()) continue;
            const auto lead = static_cast<std::uint8_t>(text[0]);
            if (lead < 0x80) {
                symbols.byte_ids[lead] = id;
            } else {
                symbols.char_ids.insert_or_assign(text, id);
            }
        }
        symbols.byte_fallback = spec_.byte_fallback;
        if (spec_.byte_fallback) {
            for (unsigned byte = 0; byte < 256; ++byte) {
                const auto it = vocab_ids_.find(fmt::format("<0x{:02X}>", byte));
                if (it != vocab_ids_.end()) symbols.fallback_ids[byte] = it->second;
            }
        }
        if (spec_.unk_token) {
            const auto it = vocab_ids_.find(*spec_.unk_token);
            if (it == vocab_ids_.end()) {
                fail(ErrorCode::kCorruptData, "{}: model.unk_token {} is not in the vocabulary",
                     spec_.source, json(*spec_.unk_token).dump());
            }
            symbols.unk = it->second;
        }
        symbols.fuse_unk = spec_.fuse_unk;
        if (!merges_join_unknowns(symbols)) {
            for (const auto& [id, text] : vocab_bytes_)
                add_joinable_pairs(text, symbols.joinable_pairs);
            for (const AddedTokenSpec& added : spec_.added)
                add_joinable_pairs(added.content, symbols.joinable_pairs);
        }
        return symbols;
    }

    static void add_joinable_pairs(std::string_view token, CharPairSet& pairs) {
        if (token.empty()) return;
        std::size_t pos = next_utf8_sequence(token, 0).length;
        char32_t previous = decode_code_point(token, 0, pos);
        while (pos < token.size()) {
            const std::size_t length = next_utf8_sequence(token, pos).length;
            const char32_t current = decode_code_point(token, pos, length);
            pairs.insert(previous, current);
            previous = current;
            pos += length;
        }
    }

    // Whether a merge names a byte-fallback or the unknown token, whose characters are not the
    // text's: then pieces are not split at unjoinable pairs.
    bool merges_join_unknowns(const InitialSymbols& symbols) const {
        std::unordered_map<TokenId, bool> special;
        for (const TokenId id : symbols.fallback_ids)
            if (id >= 0) special[id] = true;
        if (symbols.unk >= 0) special[symbols.unk] = true;
        for (const MergeRule& rule : spec_.merges) {
            for (const std::string* side : {&rule.left, &rule.right}) {
                const auto it = vocab_ids_.find(*side);
                if (it != vocab_ids_.end() && special.contains(it->second)) return true;
            }
        }
        return false;
    }

    // ignore_merges: a piece that is a vocabulary token as it stands is that token.
    std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>> whole_pieces()
        const {
        std::unordered_map<std::string, TokenId, TransparentStringHash, std::equal_to<>> pieces;
        if (!spec_.ignore_merges) return pieces;
        pieces.reserve(vocab_bytes_.size());
        for (const auto& [id, bytes] : vocab_bytes_) pieces.try_emplace(bytes, id);
        return pieces;
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
        if (state.byte_level) return;
        state.display_offsets.reserve(vocab_size_ + 1);
        for (std::size_t id = 0; id < vocab_size_; ++id) {
            state.display_offsets.push_back(static_cast<std::uint32_t>(state.display_arena.size()));
            const std::string_view token = state.token_bytes(static_cast<TokenId>(id));
            if (state.token_kinds[id] == TokenKind::kRegular) {
                state.display_arena.append(render_token(state.decoder, token));
            } else {
                state.display_arena.append(token);
            }
        }
        state.display_offsets.push_back(static_cast<std::uint32_t>(state.display_arena.size()));
    }

    // HF matches the added tokens marked normalized in the normalized text, by their normalized
    // content, after splitting the raw text by the others.
    void build_added_token_matchers(TokenizerState& state) const {
        std::vector<AddedTokenPattern> raw;
        std::vector<AddedTokenPattern> normalized;
        for (const AddedTokenSpec& added : spec_.added) {
            AddedTokenPattern pattern{added.content, added.id, added.single_word, added.lstrip,
                                      added.rstrip};
            if (added.normalized) {
                if (!state.normalizer.empty())
                    pattern.content = state.normalizer.apply(added.content);
                normalized.push_back(std::move(pattern));
            } else {
                raw.push_back(std::move(pattern));
            }
        }
        state.added_tokens = AddedTokenMatcher(std::move(raw));
        state.normalized_added_tokens = AddedTokenMatcher(std::move(normalized));
    }

    TokenId config_token_id(const TokenizerState& state, const std::string& token,
                            std::string_view key) const {
        const std::optional<TokenId> id = find_token_id(state, token);
        if (!id) {
            fail(ErrorCode::kCorruptData, "{}: {} {} is not a token of {}", spec_.config.source,
                 key, json(token).dump(), spec_.source);
        }
        return *id;
    }

    void check_token_ids(const TokenizerState& state, const std::vector<TokenId>& ids) const {
        for (const TokenId id : ids) {
            if (static_cast<std::size_t>(id) >= state.token_kinds.size() ||
                state.token_kinds[id] == TokenKind::kMissing) {
                fail(ErrorCode::kCorruptData,
                     "{}: post_processor adds the token id {}, which is not in the vocabulary",
                     spec_.source, id);
            }
        }
    }

    // The post-processor's tokens, and bos / eos from tokenizer_config.json.
    void resolve_special_tokens(TokenizerState& state) const {
        const ConfigSpec& config = spec_.config;
        if (config.bos_token) state.bos = config_token_id(state, *config.bos_token, "bos_token");
        if (config.eos_token) state.eos = config_token_id(state, *config.eos_token, "eos_token");
        state.prefix_tokens = spec_.post_processor.prefix;
        state.suffix_tokens = spec_.post_processor.suffix;
        if (rebuilds_post_processor(config.tokenizer_class)) {
            state.prefix_tokens.clear();
            state.suffix_tokens.clear();
            if (config.add_bos_token.value_or(true)) {
                if (!state.bos) {
                    fail(ErrorCode::kCorruptData, "{}: add_bos_token is set but bos_token is not",
                         config.source);
                }
                state.prefix_tokens.push_back(*state.bos);
            }
            if (config.add_eos_token.value_or(false)) {
                if (!state.eos) {
                    fail(ErrorCode::kCorruptData, "{}: add_eos_token is set but eos_token is not",
                         config.source);
                }
                state.suffix_tokens.push_back(*state.eos);
            }
        }
        check_token_ids(state, state.prefix_tokens);
        check_token_ids(state, state.suffix_tokens);
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

Tokenizer Tokenizer::from_tokenizer_json_text(std::string_view json_text, std::string_view source,
                                              std::string_view config_json) {
    TokenizerSpec spec = parse_tokenizer_json(json_text, source);
    if (!config_json.empty()) {
        spec.config =
            parse_tokenizer_config(config_json, fmt::format("{} (tokenizer_config)", source));
    }
    return Tokenizer(StateBuilder(std::move(spec)).build());
}

Tokenizer Tokenizer::from_tokenizer_json(const std::filesystem::path& file,
                                         const std::optional<std::filesystem::path>& config) {
    TokenizerSpec spec = parse_tokenizer_json(read_file(file), file.string());
    if (config) spec.config = parse_tokenizer_config(read_file(*config), config->string());
    return Tokenizer(StateBuilder(std::move(spec)).build());
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
    if (std::filesystem::is_regular_file(dir, error) && io::is_gguf_file(dir))
        return tokenizer_from_gguf(io::open_gguf(dir).gguf);
    if (!std::filesystem::is_directory(dir, error)) {
        fail(ErrorCode::kNotFound, "tokenizer directory '{}' does not exist", dir.string());
    }
    if (std::filesystem::exists(dir / "tokenizer.json", error)) {
        const auto config = dir / "tokenizer_config.json";
        return from_tokenizer_json(dir / "tokenizer.json",
                                   std::filesystem::exists(config, error)
                                       ? std::optional<std::filesystem::path>(config)
                                       : std::nullopt);
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
