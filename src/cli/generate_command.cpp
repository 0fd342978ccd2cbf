// `llmserve generate`: prompt in, text streamed to stdout as it is produced, speed on stderr.
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <iterator>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "common/error.h"
#include "engine/engine.h"
#include "engine/generation_settings.h"
#include "grammar/constraint.h"
#include "server/config.h"

namespace llmserve::cli {
namespace {

struct GenerateOptions {
    ModelOptions model;
    std::string prompt;
    engine::GenerationRequest request;
    std::vector<std::string> logit_bias;  // "id:bias"
    std::vector<engine::TokenId> bad_word_ids;
    std::optional<std::uint64_t> seed;
    bool show_tokens = false;
    // Output constraint: at most one of these.
    std::string grammar_file, json_schema_file, regex;
    std::vector<std::string> choices;
    bool json_object = false;
    // The flags whose default the model's generation_config.json replaces when they are not given
    // (--max-new-tokens, --temperature and --top-p are settings: ModelOptions::settings has them).
    CLI::Option *top_k = nullptr, *repetition_penalty = nullptr;
};

std::pair<engine::TokenId, float> parse_bias(const std::string& text) {
    const auto colon = text.find(':');
    try {
        if (colon == std::string::npos) throw std::invalid_argument("no colon");
        return {std::stoi(text.substr(0, colon)), std::stof(text.substr(colon + 1))};
    } catch (const std::exception&) {
        fail_param("logit_bias", "--logit-bias takes TOKEN_ID:BIAS (e.g. 50256:-100), got '{}'",
                   text);
    }
}

std::string read_file(const std::string& path, const char* flag) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(ErrorCode::kNotFound, fmt::format("{}: cannot read '{}'", flag, path), flag);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The constraint the flags ask for, compiled; null when none is given.
std::shared_ptr<const grammar::Constraint> output_constraint(const GenerateOptions& options) {
    using Kind = grammar::ConstraintSpec::Kind;
    std::vector<grammar::ConstraintSpec> specs;
    if (!options.grammar_file.empty())
        specs.push_back(
            {Kind::kGrammar, read_file(options.grammar_file, "--grammar"), {}, "--grammar"});
    if (!options.json_schema_file.empty())
        specs.push_back({Kind::kJsonSchema,
                         read_file(options.json_schema_file, "--json-schema"),
                         {},
                         "--json-schema"});
    if (!options.regex.empty()) specs.push_back({Kind::kRegex, options.regex, {}, "--regex"});
    if (!options.choices.empty()) specs.push_back({Kind::kChoice, "", options.choices, "--choice"});
    if (options.json_object) specs.push_back({Kind::kJsonObject, "", {}, "--json-object"});
    if (specs.empty()) return nullptr;
    if (specs.size() > 1)
        fail_param("--grammar",
                   "give at most one of --grammar, --json-schema, --regex, --choice "
                   "and --json-object");
    return grammar::compile_constraint(specs.front());
}

void run_generate(GenerateOptions& options) {
    if (options.prompt.empty()) {  // no prompt argument: read standard input
        options.prompt.assign(std::istreambuf_iterator<char>(std::cin),
                              std::istreambuf_iterator<char>());
    }
    auto constraint = output_constraint(options);
    const std::string model_dir = options.model.resolved_model_dir();
    auto model = options.model.load_model(model_dir);
    auto tokenizer = load_tokenizer(model_dir);
    engine::GenerationRequest request = options.request;
    // A flag given > its variable (MAX_LENGTH, TEMPERATURE, TOP_P, as for `serve`) >
    // generation_config.json > built-in (engine::GenerationSettings).
    const engine::GenerationSettings settings = engine::resolve_generation_settings(
        server::explicit_generation_settings(options.model.settings), model->generation_defaults());
    request.stop.max_new_tokens = settings.max_new_tokens;
    request.sampling.temperature = static_cast<float>(settings.temperature);
    request.sampling.top_p = static_cast<float>(settings.top_p);
    if (options.top_k->count() == 0) request.sampling.top_k = settings.top_k;
    if (options.repetition_penalty->count() == 0)
        request.sampling.repetition_penalty = settings.repetition_penalty;
    request.prompt = tokenizer->encode(options.prompt);
    request.constraint = std::move(constraint);
    request.sampling.seed = options.seed;
    for (const auto& bias : options.logit_bias)
        request.sampling.logit_bias.push_back(parse_bias(bias));
    for (engine::TokenId id : options.bad_word_ids) request.sampling.bad_words_ids.push_back({id});

    engine::EngineOptions engine_options;
    engine_options.kv_format = options.model.kv_format();
    engine::Engine engine(model, tokenizer, engine_options);
    auto handle = engine.submit(std::move(request));
    const bool several = options.request.n > 1;
    while (!handle->finished()) {
        auto event = handle->next_event(std::chrono::milliseconds(100));
        if (!event) continue;
        if (several) {
            std::cout << "[" << event->index << "] ";
        }
        std::cout << event->text;
        if (several) std::cout << "\n";
        std::cout.flush();
    }
    const engine::RequestResult result = handle->wait();
    std::cout << "\n";
    if (!result.error.empty()) throw Error(result.error_code, "generation failed: " + result.error);
    for (const auto& sequence : result.sequences) {
        std::string ending = std::string(engine::to_string(sequence.finish_reason));
        if (!sequence.matched_stop.empty()) ending += fmt::format(" '{}'", sequence.matched_stop);
        std::cerr << fmt::format("[{}] {} tokens, finish reason: {}\n", sequence.index,
                                 sequence.tokens.size(), ending);
        if (options.show_tokens) {
            for (const auto& t : sequence.tokens) std::cerr << t.token << " ";
            std::cerr << "\n";
        }
    }
    const auto& t = result.timing;
    const double prefill_rate =
        t.prefill_ms > 0 ? result.prompt_tokens / (t.prefill_ms / 1000.0) : 0.0;
    const int decoded =
        std::max(0, result.completion_tokens - static_cast<int>(result.sequences.size()));
    const double decode_rate = t.decode_ms > 0 ? decoded / (t.decode_ms / 1000.0) : 0.0;
    std::cerr << fmt::format(
        "prompt: {} tokens in {:.1f} ms ({:.1f} tokens/s); generation: {} tokens in {:.1f} ms "
        "({:.1f} tokens/s); "
        "seed {}\n",
        result.prompt_tokens, t.prefill_ms, prefill_rate, result.completion_tokens, t.decode_ms,
        decode_rate, result.seed);
}

}  // namespace

void register_generate_command(CLI::App& app) {
    auto options = std::make_shared<GenerateOptions>();
    // The service's built-in defaults (MAX_LENGTH, TEMPERATURE, TOP_P), for --help.
    const engine::GenerationSettings defaults;
    options->request.stop.max_new_tokens = defaults.max_new_tokens;
    options->request.sampling.temperature = static_cast<float>(defaults.temperature);
    options->request.sampling.top_p = static_cast<float>(defaults.top_p);
    auto& s = options->request.sampling;
    auto& stop = options->request.stop;
    CLI::App* cmd =
        app.add_subcommand("generate", "Continue a prompt, streaming the text to stdout");
    options->model.add_to(*cmd);
    cmd->add_option("prompt", options->prompt, "Prompt text (default: read standard input)");
    options->model.bind("MAX_LENGTH",
                        cmd->add_option("--max-new-tokens,--max-length", stop.max_new_tokens,
                                        "Tokens to generate at most (default: $MAX_LENGTH, else "
                                        "generation_config.json's, else this)")
                            ->capture_default_str());
    cmd->add_option("--min-new-tokens", stop.min_new_tokens,
                    "EOS and stop tokens suppressed until this many")
        ->capture_default_str();
    options->model.bind("TEMPERATURE", cmd->add_option("--temperature", s.temperature,
                                                       "0 = greedy (default: $TEMPERATURE, else "
                                                       "generation_config.json's, else this)")
                                           ->capture_default_str());
    options->top_k = cmd->add_option("--top-k", s.top_k, "Keep the k most likely tokens (0 = off)")
                         ->capture_default_str();
    options->model.bind("TOP_P", cmd->add_option("--top-p", s.top_p,
                                                 "Nucleus sampling mass, 1 = off (default: $TOP_P, "
                                                 "else generation_config.json's, else this)")
                                     ->capture_default_str());
    cmd->add_option("--min-p", s.min_p, "Drop tokens below min_p x the top probability (0 = off)")
        ->capture_default_str();
    cmd->add_option("--typical-p", s.typical_p, "Locally typical sampling mass (1 = off)")
        ->capture_default_str();
    options->repetition_penalty = cmd->add_option("--repetition-penalty", s.repetition_penalty,
                                                  "transformers' repetition penalty (1 = off)")
                                      ->capture_default_str();
    cmd->add_option("--presence-penalty", s.presence_penalty, "OpenAI presence penalty [-2, 2]")
        ->capture_default_str();
    cmd->add_option("--frequency-penalty", s.frequency_penalty, "OpenAI frequency penalty [-2, 2]")
        ->capture_default_str();
    cmd->add_option("--no-repeat-ngram-size", s.no_repeat_ngram_size,
                    "Ban repeating n-grams of this size (0 = off)")
        ->capture_default_str();
    cmd->add_option("--logit-bias", options->logit_bias,
                    "TOKEN_ID:BIAS added to that token's logit (repeatable)");
    cmd->add_option("--bad-word-id", options->bad_word_ids,
                    "Token id never to generate (repeatable)");
    cmd->add_option("--stop", stop.stop, "Stop string (repeatable); the text ends before it");
    cmd->add_option("--stop-token-id", stop.stop_token_ids,
                    "Token id that ends generation (repeatable)");
    cmd->add_flag("--ignore-eos", stop.ignore_eos,
                  "Keep generating past the end-of-sequence token");
    cmd->add_option("--seed", options->seed, "Random seed (default: drawn and reported)");
    cmd->add_option("-n,--num-return-sequences", options->request.n, "Samples of the prompt")
        ->capture_default_str();
    cmd->add_flag("--show-tokens", options->show_tokens, "Print the generated token ids on stderr");
    cmd->add_option("--grammar", options->grammar_file,
                    "GBNF grammar file (llama.cpp notation) the output must match");
    cmd->add_option("--json-schema", options->json_schema_file,
                    "JSON Schema file the output must be a compact instance of");
    cmd->add_option("--regex", options->regex, "Regular expression the whole output must match");
    cmd->add_option("--choice", options->choices,
                    "The output is exactly one of these (repeatable)");
    cmd->add_flag("--json-object", options->json_object, "The output is a compact JSON object");
    cmd->callback([options] {
        if (options->model.resolve_settings()) run_generate(*options);
    });
}

}  // namespace llmserve::cli
