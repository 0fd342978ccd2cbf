// Jinja template text to tokens, with the whitespace rules transformers sets: trim_blocks (one
// newline after a block or comment tag is dropped), lstrip_blocks (spaces and tabs before a block
// or comment tag on its own line are dropped), and `-` / `+` markers on tags.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llmserve::chat {

struct SourcePos {
    int line = 1;
    int column = 1;
};

enum class TokenKind {
    kText,        // template data between tags
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kVarBegin,    // {{
    kVarEnd,      // }}
    kName,
    kString,  // text: the decoded literal
    kInteger,
    kFloat,
    kOperator,  // text: + - * / // % ** ~ == != < > <= >= = ( ) [ ] { } , . : |
    kEnd,
};

struct Token {
    TokenKind kind;
    std::string text;
    SourcePos pos;
};

// Throws Error(kInvalidArgument) "chat template: line L:C: ..." on malformed input.
std::vector<Token> tokenize_template(std::string_view source);

}  // namespace llmserve::chat
