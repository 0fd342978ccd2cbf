// Tokens to a statement tree, with Jinja2's grammar and operator precedence.
#pragma once

#include <string_view>

#include "chat/ast.h"

namespace llmserve::chat {

// Throws Error(kInvalidArgument) "chat template: line L:C: ..." on a syntax error, an unknown
// tag, or a tag that would load another template (include, import, extends).
Body parse_template(std::string_view source);

}  // namespace llmserve::chat
