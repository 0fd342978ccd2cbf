#include "chat/interpreter.h"

#include <fmt/format.h>

#include "chat/builtins.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

[[noreturn]] void runtime_error(SourcePos pos, const std::string& what) {
    fail(ErrorCode::kInvalidArgument, "chat template: line {}:{}: {}", pos.line, pos.column, what);
}

// Whether `value` holds `target` anywhere inside (so that `set ns.x = ...` cannot make a cycle).
bool holds(const Value& value, const Namespace* target, int depth = 0) {
    if (depth > 256) return true;
    if (value.is_namespace()) {
        if (value.as_namespace().get() == target) return true;
        for (const auto& item : value.as_namespace()->attributes.items)
            if (holds(item.second, target, depth + 1)) return true;
    } else if (value.is_list()) {
        for (const Value& item : value.as_list())
            if (holds(item, target, depth + 1)) return true;
    } else if (value.is_dict()) {
        for (const auto& item : value.as_dict().items)
            if (holds(item.second, target, depth + 1)) return true;
    }
    return false;
}

// The values a for loop iterates: list items, dict keys, string characters.
List iteration_items(const Value& value, SourcePos pos) {
    if (value.is_list()) return value.as_list();
    if (value.is_undefined()) return {};
    if (value.is_dict()) {
        List keys;
        for (const auto& item : value.as_dict().items) keys.push_back(item.first);
        return keys;
    }
    if (value.is_string()) {
        List chars;
        for (const std::string_view c : code_points(value.as_string()))
            chars.emplace_back(std::string(c));
        return chars;
    }
    runtime_error(pos, fmt::format("'{}' object is not iterable", value.type_name()));
}

// Jinja2's object_type_repr, as its undefined-attribute messages word it.
std::string described(const Value& object) {
    return object.is_none() ? "'None'" : fmt::format("'{} object'", object.type_name());
}

}  // namespace

void require_defined(const Value& value) {
    if (value.is_undefined())
        fail(ErrorCode::kInvalidArgument, "chat template: {}", value.as_undefined().reason);
}

Interpreter::Interpreter(const RenderLimits& limits, std::shared_ptr<Scope> globals)
    : limits_(limits), scope_(std::move(globals)) {}

Interpreter::~Interpreter() {
    for (const auto& scope : captured_scopes_) scope->variables.clear();
}

std::string Interpreter::render(const Body& body) {
    auto top = std::make_shared<Scope>();
    top->parent = scope_;
    scope_ = top;
    return render_to_string(body);
}

void Interpreter::step() {
    if (++steps_ > limits_.max_steps)
        fail(ErrorCode::kInvalidArgument,
             "chat template: rendering took more than {} steps (a loop that does not end?)",
             limits_.max_steps);
}

void Interpreter::charge(std::size_t bytes) {
    if (bytes > limits_.max_allocated_bytes - allocated_)
        fail(ErrorCode::kInvalidArgument,
             "chat template: rendering created more than {} bytes of values",
             limits_.max_allocated_bytes);
    allocated_ += bytes;
}

void Interpreter::emit(std::string_view text) {
    if (out_->size() + text.size() > limits_.max_output_bytes)
        fail(ErrorCode::kInvalidArgument, "chat template: the output exceeds {} bytes",
             limits_.max_output_bytes);
    charge(text.size());
    out_->append(text);
}

std::string Interpreter::render_to_string(const Body& body) {
    std::string buffer;
    std::string* saved = out_;
    out_ = &buffer;
    try {
        exec_body(body);
    } catch (...) {
        out_ = saved;
        throw;
    }
    out_ = saved;
    return buffer;
}

Interpreter::Flow Interpreter::exec_body(const Body& body) {
    for (const StmtPtr& stmt : body) {
        const Flow flow = exec(*stmt);
        if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec(const Stmt& stmt) {
    step();
    switch (stmt.kind) {
        case Stmt::Kind::kText:
            emit(stmt.text);
            break;
        case Stmt::Kind::kOutput: {
            const Value value = eval(*stmt.expr);
            if (value.is_string()) {
                emit(value.as_string());
            } else {
                emit(to_str(value));
            }
            break;
        }
        case Stmt::Kind::kIf:
            for (std::size_t i = 0; i < stmt.conditions.size(); ++i)
                if (truthy(eval(*stmt.conditions[i]))) return exec_body(stmt.bodies[i]);
            return exec_body(stmt.else_body);
        case Stmt::Kind::kFor:
            exec_for(stmt);
            break;
        case Stmt::Kind::kSet:
            exec_set(stmt);
            break;
        case Stmt::Kind::kMacro:
            scope_->variables[stmt.name] = make_macro(stmt, stmt.params, stmt.body, stmt.name);
            break;
        case Stmt::Kind::kCallBlock: {
            const Expr& call = *stmt.expr;
            const Value callee = eval(*call.a);
            CallArgs args = eval_args(call);
            args.keywords.emplace_back("caller",
                                       make_macro(stmt, stmt.params, stmt.body, "caller"));
            emit(to_str(this->call(callee, args)));
            break;
        }
        case Stmt::Kind::kFilterBlock: {
            const Value input(render_to_string(stmt.body));
            const Value* saved = filter_block_input_;
            filter_block_input_ = &input;
            const Value result = eval(*stmt.expr);
            filter_block_input_ = saved;
            emit(to_str(result));
            break;
        }
        case Stmt::Kind::kBreak:
            return Flow::kBreak;
        case Stmt::Kind::kContinue:
            return Flow::kContinue;
    }
    return Flow::kNormal;
}

void Interpreter::exec_for(const Stmt& stmt) {
    const Value iterable = eval(*stmt.expr);
    List items = iteration_items(iterable, stmt.expr->pos);
    const auto outer = scope_;
    const auto bind = [&](Scope& scope, const Value& item) {
        if (stmt.targets.size() == 1) {
            scope.variables[stmt.targets[0]] = item;
            return;
        }
        const List unpacked = iteration_items(item, stmt.pos);
        if (unpacked.size() != stmt.targets.size())
            runtime_error(stmt.pos, fmt::format("cannot unpack {} values into {} loop variables",
                                                unpacked.size(), stmt.targets.size()));
        for (std::size_t i = 0; i < unpacked.size(); ++i)
            scope.variables[stmt.targets[i]] = unpacked[i];
    };
    if (stmt.condition) {
        // `for x in xs if cond`: the filter runs first, and loop.* counts what passed.
        List kept;
        for (const Value& item : items) {
            step();
            scope_ = std::make_shared<Scope>();
            scope_->parent = outer;
            bind(*scope_, item);
            const bool keep = truthy(eval(*stmt.condition));
            scope_ = outer;
            if (keep) kept.push_back(item);
        }
        items = std::move(kept);
    }
    const auto length = static_cast<std::int64_t>(items.size());
    const auto shared_items = std::make_shared<const List>(std::move(items));
    try {
        for (std::int64_t i = 0; i < length; ++i) {
            step();
            scope_ = std::make_shared<Scope>();
            scope_->parent = outer;
            const List& list = *shared_items;
            bind(*scope_, list[i]);
            Dict loop;
            loop.items.reserve(12);
            loop.items.emplace_back("index", i + 1);
            loop.items.emplace_back("index0", i);
            loop.items.emplace_back("revindex", length - i);
            loop.items.emplace_back("revindex0", length - i - 1);
            loop.items.emplace_back("first", i == 0);
            loop.items.emplace_back("last", i == length - 1);
            loop.items.emplace_back("length", length);
            loop.items.emplace_back("depth", 1);
            loop.items.emplace_back("depth0", 0);
            if (i > 0) loop.items.emplace_back("previtem", list[i - 1]);
            if (i + 1 < length) loop.items.emplace_back("nextitem", list[i + 1]);
            loop.items.emplace_back(
                "cycle", make_callable("loop.cycle", [i](Interpreter&, CallArgs& args) -> Value {
                    if (args.positional.empty())
                        fail(ErrorCode::kInvalidArgument,
                             "chat template: loop.cycle() needs at least one value");
                    return args.positional[static_cast<std::size_t>(i) % args.positional.size()];
                }));
            scope_->variables["loop"] = Value(std::move(loop));
            if (exec_body(stmt.body) == Flow::kBreak) break;
        }
        scope_ = outer;
    } catch (...) {
        scope_ = outer;
        throw;
    }
    if (length == 0) exec_body(stmt.else_body);
}

void Interpreter::exec_set(const Stmt& stmt) {
    Value value;
    if (stmt.block_set) {
        const Value text(render_to_string(stmt.body));
        value = text;
        if (stmt.expr) {
            const Value* saved = filter_block_input_;
            filter_block_input_ = &text;
            value = eval(*stmt.expr);
            filter_block_input_ = saved;
        }
    } else {
        value = eval(*stmt.expr);
    }
    if (!stmt.target_object.empty()) {
        const Value object = lookup(stmt.target_object);
        if (!object.is_namespace())
            runtime_error(stmt.pos, fmt::format("cannot assign attribute '{}' on '{}': only a "
                                                "namespace() can be changed",
                                                stmt.targets[0], stmt.target_object));
        Namespace* ns = object.as_namespace().get();
        if (holds(value, ns)) runtime_error(stmt.pos, "a namespace cannot be stored inside itself");
        ns->attributes.set(Value(stmt.targets[0]), std::move(value));
        return;
    }
    if (stmt.targets.size() == 1) {
        scope_->variables[stmt.targets[0]] = std::move(value);
        return;
    }
    const List unpacked = iteration_items(value, stmt.pos);
    if (unpacked.size() != stmt.targets.size())
        runtime_error(stmt.pos, fmt::format("cannot unpack {} values into {} names",
                                            unpacked.size(), stmt.targets.size()));
    for (std::size_t i = 0; i < unpacked.size(); ++i)
        scope_->variables[stmt.targets[i]] = unpacked[i];
}

Value Interpreter::make_macro(const Stmt& stmt, const std::vector<MacroParam>& params,
                              const Body& body, std::string name) {
    const std::shared_ptr<Scope> defined_in = scope_;
    captured_scopes_.push_back(scope_);
    const Stmt* where = &stmt;
    return make_callable(
        name, [defined_in, where, &params, &body, name](Interpreter& interp, CallArgs& args) {
            if (interp.call_depth_ >= interp.limits_.max_call_depth)
                runtime_error(where->pos, fmt::format("macro calls are nested deeper than {}",
                                                      interp.limits_.max_call_depth));
            auto frame = std::make_shared<Scope>();
            frame->parent = defined_in;
            const auto saved_scope = interp.scope_;
            interp.scope_ = frame;
            ++interp.call_depth_;
            try {
                List varargs;
                for (std::size_t i = 0; i < args.positional.size(); ++i) {
                    if (i < params.size()) {
                        frame->variables[params[i].name] = args.positional[i];
                    } else {
                        varargs.push_back(args.positional[i]);
                    }
                }
                Dict kwargs;
                for (auto& [key, value] : args.keywords) {
                    bool is_param = key == "caller";
                    for (const MacroParam& param : params) is_param |= param.name == key;
                    if (is_param) {
                        frame->variables[key] = value;
                    } else {
                        kwargs.set(Value(key), value);
                    }
                }
                for (const MacroParam& param : params) {
                    if (frame->variables.count(param.name) != 0) continue;
                    frame->variables[param.name] =
                        param.default_value
                            ? interp.eval(*param.default_value)
                            : Value(Undefined{fmt::format("parameter '{}' was not provided to '{}'",
                                                          param.name, name)});
                }
                frame->variables["varargs"] = Value::tuple(std::move(varargs));
                frame->variables["kwargs"] = Value(std::move(kwargs));
                Value result(interp.render_to_string(body));
                --interp.call_depth_;
                interp.scope_ = saved_scope;
                return result;
            } catch (...) {
                --interp.call_depth_;
                interp.scope_ = saved_scope;
                throw;
            }
        });
}

Value Interpreter::lookup(const std::string& name) const {
    for (const Scope* scope = scope_.get(); scope != nullptr; scope = scope->parent.get()) {
        const auto it = scope->variables.find(name);
        if (it != scope->variables.end()) return it->second;
    }
    return Undefined{fmt::format("'{}' is undefined", name)};
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
    if (callee.is_callable()) return callee.as_callable().call(*this, args);
    require_defined(callee);
    fail(ErrorCode::kInvalidArgument, "chat template: '{}' object is not callable",
         callee.type_name());
}

Value Interpreter::apply_filter(const std::string& name, const Value& input, CallArgs& args) {
    step();
    return builtin_filter(*this, name, input, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& value, CallArgs& args) {
    step();
    return builtin_test(*this, name, value, args);
}

Value Interpreter::attribute(const Value& object, const std::string& name) {
    if (name.rfind("__", 0) == 0)
        fail(ErrorCode::kInvalidArgument,
             "chat template: access to attribute '{}' of '{}' is not allowed", name,
             object.type_name());
    require_defined(object);
    if (object.is_namespace()) {
        const Value* found = object.as_namespace()->attributes.find(Value(name));
        if (found != nullptr) return *found;
        return Undefined{fmt::format("'Namespace object' has no attribute '{}'", name)};
    }
    Value method = builtin_method(object, name);
    if (!method.is_undefined()) return method;
    if (object.is_dict()) {
        const Value* found = object.as_dict().find(Value(name));
        if (found != nullptr) return *found;
    }
    return Undefined{fmt::format("{} has no attribute '{}'", described(object), name)};
}

Value Interpreter::item(const Value& object, const Value& key) {
    require_defined(object);
    if (object.is_dict()) {
        const Value* found = object.as_dict().find(key);
        if (found != nullptr) return *found;
    } else if ((object.is_list() || object.is_string()) && (key.is_int() || key.is_bool())) {
        const std::int64_t index = key.to_int();
        if (object.is_list()) {
            const List& list = object.as_list();
            const auto size = static_cast<std::int64_t>(list.size());
            const std::int64_t at = index < 0 ? index + size : index;
            if (at >= 0 && at < size) return list[static_cast<std::size_t>(at)];
        } else {
            const auto chars = code_points(object.as_string());
            const auto size = static_cast<std::int64_t>(chars.size());
            const std::int64_t at = index < 0 ? index + size : index;
            if (at >= 0 && at < size) return std::string(chars[static_cast<std::size_t>(at)]);
        }
        return Undefined{fmt::format("{} has no element {}", described(object), index)};
    } else if (object.is_namespace() && key.is_string()) {
        return attribute(object, key.as_string());
    }
    if (key.is_string() && !object.is_dict()) return attribute(object, key.as_string());
    if (key.is_string() && object.is_dict()) {
        Value method = builtin_method(object, key.as_string());
        if (!method.is_undefined()) return method;
    }
    if (key.is_string())
        return Undefined{
            fmt::format("{} has no attribute '{}'", described(object), key.as_string())};
    return Undefined{fmt::format("{} has no element {}", described(object), repr(key))};
}

}  // namespace llmserve::chat
