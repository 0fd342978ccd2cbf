// Jinja2's built-in filters, tests and globals, Python's operators, and the str / dict / list
// methods the sandbox lets a template call (none that mutates: transformers renders in an
// ImmutableSandboxedEnvironment).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "chat/interpreter.h"
#include "chat/value.h"

namespace llmserve::chat {

// Each throws Error(kInvalidArgument) "chat template: ..." naming an unknown filter or test.
Value builtin_filter(Interpreter& interp, const std::string& name, const Value& input,
                     CallArgs& args);
bool builtin_test(Interpreter& interp, const std::string& name, const Value& value, CallArgs& args);
// `object.name` as a bound method; Undefined when `object` has no such method.
Value builtin_method(const Value& object, const std::string& name);
// range, dict, namespace, raise_exception, strftime_now.
std::shared_ptr<Scope> make_global_scope();

// Python's binary operators + - * / // % ** and Jinja's ~.
Value binary_operation(Interpreter& interp, std::string_view op, const Value& a, const Value& b);
// Python's `item in container`.
bool contains(const Value& container, const Value& item);

// Argument binding for built-ins: the argument at `position` or named `name`, else `fallback`.
Value argument(const CallArgs& args, std::size_t position, std::string_view name,
               Value fallback = Value());

}  // namespace llmserve::chat
