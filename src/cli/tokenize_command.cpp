// `llmserve tokenize` / `llmserve detokenize`: the model's tokenizer on its own.
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_options.h"
#include "common/error.h"

namespace llmserve::cli {
namespace {

std::string read_stdin() {
    return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
}

}  // namespace

void register_tokenize_commands(CLI::App& app) {
    struct Options {
        ModelOptions model;
        std::string text;
        bool ordinary = false;
    };
    auto tok = std::make_shared<Options>();
    CLI::App* tokenize =
        app.add_subcommand("tokenize", "Print the token ids of a text (argument or stdin)");
    tok->model.add_model_name_to(*tokenize);
    tokenize->add_option("text", tok->text, "Text (default: standard input)");
    tokenize->add_flag("--ordinary", tok->ordinary,
                       "Treat special tokens such as <|endoftext|> as plain text");
    tokenize->callback([tok] {
        if (!tok->model.resolve_settings()) return;
        auto tokenizer = load_tokenizer(tok->model.resolved_model_dir());
        const std::string text = tok->text.empty() ? read_stdin() : tok->text;
        const auto ids = tok->ordinary ? tokenizer->encode_ordinary(text) : tokenizer->encode(text);
        for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
        std::cout << "\n";
    });

    auto detok = std::make_shared<Options>();
    CLI::App* detokenize =
        app.add_subcommand("detokenize", "Print the text of token ids (arguments or stdin)");
    detok->model.add_model_name_to(*detokenize);
    auto ids = std::make_shared<std::vector<std::string>>();
    detokenize->add_option("ids", *ids,
                           "Token ids, separated by spaces or commas (default: standard input)");
    detokenize->callback([detok, ids] {
        if (!detok->model.resolve_settings()) return;
        auto tokenizer = load_tokenizer(detok->model.resolved_model_dir());
        std::string joined;
        for (const auto& id : *ids) joined += id + " ";
        if (ids->empty()) joined = read_stdin();
        for (char& c : joined)
            if (c == ',' || c == '[' || c == ']') c = ' ';
        std::istringstream in(joined);
        std::vector<tokenizer::TokenId> tokens;
        std::string word;
        while (in >> word) {
            try {
                std::size_t used = 0;
                tokens.push_back(std::stoi(word, &used));
                if (used != word.size()) throw std::invalid_argument(word);
            } catch (const std::exception&) {
                fail(ErrorCode::kInvalidArgument, "'{}' is not a token id", word);
            }
        }
        std::cout << tokenizer->decode(tokens) << "\n";
    });
}

}  // namespace llmserve::cli
