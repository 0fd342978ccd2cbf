#include "chat/parser.h"

#include <charconv>
#include <cstdlib>
#include <initializer_list>

#include "common/error.h"

namespace llmserve::chat {
namespace {

// Deeper expression nesting than this is refused, so that a hostile template cannot exhaust
// the stack of the parser or of the evaluator.
constexpr int kMaxExpressionDepth = 100;
constexpr int kMaxStatementDepth = 100;

class Parser {
  public:
    explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

    Body parse() {
        std::string end;
        Body body = parse_body({}, end);
        return body;
    }

  private:
    const Token& current() const { return tokens_[index_]; }
    const Token& peek(std::size_t ahead = 1) const {
        return tokens_[std::min(index_ + ahead, tokens_.size() - 1)];
    }
    void advance() {
        if (index_ + 1 < tokens_.size()) ++index_;
    }

    [[noreturn]] void error(const std::string& what) const { error_at(current().pos, what); }
    [[noreturn]] static void error_at(SourcePos pos, const std::string& what) {
        fail(ErrorCode::kInvalidArgument, "chat template: line {}:{}: {}", pos.line, pos.column,
             what);
    }

    static std::string describe(const Token& token) {
        switch (token.kind) {
            case TokenKind::kText:
                return "template text";
            case TokenKind::kBlockBegin:
                return "'{%'";
            case TokenKind::kBlockEnd:
                return "'%}'";
            case TokenKind::kVarBegin:
                return "'{{'";
            case TokenKind::kVarEnd:
                return "'}}'";
            case TokenKind::kEnd:
                return "the end of the template";
            case TokenKind::kString:
                return "a string";
            case TokenKind::kInteger:
            case TokenKind::kFloat:
                return "number " + token.text;
            default:
                return "'" + token.text + "'";
        }
    }

    bool is_op(std::string_view op) const {
        return current().kind == TokenKind::kOperator && current().text == op;
    }
    bool is_name(std::string_view name) const {
        return current().kind == TokenKind::kName && current().text == name;
    }
    bool skip_op(std::string_view op) {
        if (!is_op(op)) return false;
        advance();
        return true;
    }
    bool skip_name(std::string_view name) {
        if (!is_name(name)) return false;
        advance();
        return true;
    }
    void expect_op(std::string_view op) {
        if (!skip_op(op)) error("expected '" + std::string(op) + "', got " + describe(current()));
    }
    std::string expect_name() {
        if (current().kind != TokenKind::kName)
            error("expected a name, got " + describe(current()));
        std::string name = current().text;
        advance();
        return name;
    }
    void expect_block_end() {
        if (current().kind != TokenKind::kBlockEnd)
            error("expected '%}', got " + describe(current()));
        advance();
    }

    ExprPtr make(Expr::Kind kind, SourcePos pos) {
        auto expr = std::make_unique<Expr>();
        expr->kind = kind;
        expr->pos = pos;
        return expr;
    }

    // Statements until a block tag named in `ends` (its name consumed, returned in `end`).
    Body parse_body(std::initializer_list<std::string_view> ends, std::string& end) {
        if (++statement_depth_ > kMaxStatementDepth)
            error("blocks are nested deeper than " + std::to_string(kMaxStatementDepth));
        Body body;
        while (true) {
            const Token& token = current();
            if (token.kind == TokenKind::kEnd) {
                if (ends.size() == 0) break;
                error("unexpected end of template: expected '{% " + std::string(*ends.begin()) +
                      " %}'");
            }
            if (token.kind == TokenKind::kText) {
                auto stmt = std::make_unique<Stmt>();
                stmt->kind = Stmt::Kind::kText;
                stmt->pos = token.pos;
                stmt->text = token.text;
                body.push_back(std::move(stmt));
                advance();
            } else if (token.kind == TokenKind::kVarBegin) {
                auto stmt = std::make_unique<Stmt>();
                stmt->kind = Stmt::Kind::kOutput;
                stmt->pos = token.pos;
                advance();
                stmt->expr = parse_tuple(true);
                if (current().kind != TokenKind::kVarEnd)
                    error("expected '}}', got " + describe(current()));
                advance();
                body.push_back(std::move(stmt));
            } else if (token.kind == TokenKind::kBlockBegin) {
                advance();
                if (current().kind != TokenKind::kName)
                    error("expected a statement name, got " + describe(current()));
                const std::string name = current().text;
                for (const std::string_view candidate : ends) {
                    if (name == candidate) {
                        advance();
                        end = name;
                        --statement_depth_;
                        return body;
                    }
                }
                parse_statement(body);
            } else {
                error("unexpected " + describe(token));
            }
        }
        --statement_depth_;
        return body;
    }

    void parse_statement(Body& body) {
        const SourcePos pos = current().pos;
        const std::string name = current().text;
        advance();
        auto stmt = std::make_unique<Stmt>();
        stmt->pos = pos;
        std::string end;
        if (name == "if") {
            stmt->kind = Stmt::Kind::kIf;
            stmt->conditions.push_back(parse_tuple(true));
            expect_block_end();
            while (true) {
                stmt->bodies.push_back(parse_body({"elif", "else", "endif"}, end));
                if (end == "elif") {
                    stmt->conditions.push_back(parse_tuple(true));
                    expect_block_end();
                    continue;
                }
                if (end == "else") {
                    expect_block_end();
                    stmt->else_body = parse_body({"endif"}, end);
                }
                break;
            }
        } else if (name == "for") {
            stmt->kind = Stmt::Kind::kFor;
            const bool parenthesized = skip_op("(");
            do {
                stmt->targets.push_back(expect_name());
            } while (skip_op(",") && current().kind == TokenKind::kName);
            if (parenthesized) expect_op(")");
            if (!skip_name("in")) error("expected 'in' in a for loop, got " + describe(current()));
            stmt->expr = parse_tuple(false);
            if (skip_name("if")) stmt->condition = parse_expression(true);
            if (is_name("recursive")) error("recursive for loops are not supported");
            expect_block_end();
            ++loop_depth_;
            stmt->body = parse_body({"else", "endfor"}, end);
            --loop_depth_;
            if (end == "else") {
                expect_block_end();
                stmt->else_body = parse_body({"endfor"}, end);
            }
        } else if (name == "set") {
            stmt->kind = Stmt::Kind::kSet;
            stmt->targets.push_back(expect_name());
            if (skip_op(".")) {
                stmt->target_object = stmt->targets[0];
                stmt->targets[0] = expect_name();
            } else {
                while (skip_op(",")) stmt->targets.push_back(expect_name());
            }
            if (skip_op("=")) {
                stmt->expr = parse_tuple(true);
            } else {
                if (stmt->targets.size() != 1 || !stmt->target_object.empty())
                    error("a block set assigns exactly one name");
                stmt->block_set = true;
                if (is_op("|")) stmt->expr = parse_filter_chain(nullptr);
                expect_block_end();
                stmt->body = parse_body({"endset"}, end);
                expect_block_end();
                body.push_back(std::move(stmt));
                return;
            }
        } else if (name == "macro") {
            stmt->kind = Stmt::Kind::kMacro;
            stmt->name = expect_name();
            expect_op("(");
            parse_params(stmt->params);
            expect_block_end();
            stmt->body = parse_body({"endmacro"}, end);
        } else if (name == "call") {
            stmt->kind = Stmt::Kind::kCallBlock;
            if (skip_op("(")) parse_params(stmt->params);
            stmt->expr = parse_expression(true);
            if (stmt->expr->kind != Expr::Kind::kCall) error_at(pos, "'{% call %}' needs a call");
            expect_block_end();
            stmt->body = parse_body({"endcall"}, end);
        } else if (name == "filter") {
            stmt->kind = Stmt::Kind::kFilterBlock;
            stmt->expr = parse_filter_chain(nullptr, /*leading_pipe=*/false);
            expect_block_end();
            stmt->body = parse_body({"endfilter"}, end);
        } else if (name == "break" || name == "continue") {
            if (loop_depth_ == 0) error_at(pos, "'" + name + "' outside a for loop");
            stmt->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
        } else if (name == "generation") {
            // transformers' AssistantTracker marks assistant text; it renders as plain content.
            expect_block_end();
            Body inner = parse_body({"endgeneration"}, end);
            expect_block_end();
            for (auto& item : inner) body.push_back(std::move(item));
            return;
        } else if (name == "include" || name == "import" || name == "from" || name == "extends" ||
                   name == "block") {
            error_at(pos, "'{% " + name +
                              " %}' is not allowed: a chat template cannot load or define other "
                              "templates");
        } else {
            error_at(pos, "unknown statement '" + name + "'");
        }
        expect_block_end();
        body.push_back(std::move(stmt));
    }

    void parse_params(std::vector<MacroParam>& params) {
        while (!skip_op(")")) {
            if (!params.empty()) expect_op(",");
            if (skip_op(")")) break;
            MacroParam param;
            param.name = expect_name();
            if (skip_op("=")) param.default_value = parse_expression(true);
            params.push_back(std::move(param));
        }
    }

    // A tuple without parentheses where Jinja allows one ({{ a, b }}, set x = 1, 2).
    ExprPtr parse_tuple(bool with_condition) {
        const SourcePos pos = current().pos;
        ExprPtr first = parse_expression(with_condition);
        if (!is_op(",")) return first;
        ExprPtr tuple = make(Expr::Kind::kTuple, pos);
        tuple->items.push_back(std::move(first));
        while (skip_op(",")) {
            if (current().kind == TokenKind::kBlockEnd || current().kind == TokenKind::kVarEnd ||
                is_name("if"))
                break;
            tuple->items.push_back(parse_expression(with_condition));
        }
        return tuple;
    }

    struct DepthGuard {
        Parser& parser;
        explicit DepthGuard(Parser& p) : parser(p) {
            if (++parser.expression_depth_ > kMaxExpressionDepth)
                parser.error("expression is nested deeper than " +
                             std::to_string(kMaxExpressionDepth));
        }
        ~DepthGuard() { --parser.expression_depth_; }
    };

    ExprPtr parse_expression(bool with_condition) {
        DepthGuard guard(*this);
        if (!with_condition) return parse_or();
        ExprPtr value = parse_or();
        while (is_name("if")) {
            const SourcePos pos = current().pos;
            advance();
            ExprPtr cond = make(Expr::Kind::kCondition, pos);
            cond->a = parse_or();
            cond->b = std::move(value);
            if (skip_name("else")) cond->c = parse_expression(true);
            value = std::move(cond);
        }
        return value;
    }

    ExprPtr parse_or() {
        ExprPtr left = parse_and();
        while (is_name("or")) {
            ExprPtr node = make(Expr::Kind::kOr, current().pos);
            advance();
            node->a = std::move(left);
            node->b = parse_and();
            left = std::move(node);
        }
        return left;
    }

    ExprPtr parse_and() {
        ExprPtr left = parse_not();
        while (is_name("and")) {
            ExprPtr node = make(Expr::Kind::kAnd, current().pos);
            advance();
            node->a = std::move(left);
            node->b = parse_not();
            left = std::move(node);
        }
        return left;
    }

    ExprPtr parse_not() {
        if (is_name("not")) {
            DepthGuard guard(*this);
            ExprPtr node = make(Expr::Kind::kUnary, current().pos);
            advance();
            node->name = "not";
            node->a = parse_not();
            return node;
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        const SourcePos pos = current().pos;
        ExprPtr first = parse_math1();
        ExprPtr node;
        while (true) {
            std::string op;
            if (current().kind == TokenKind::kOperator &&
                (current().text == "==" || current().text == "!=" || current().text == "<" ||
                 current().text == ">" || current().text == "<=" || current().text == ">=")) {
                op = current().text;
                advance();
            } else if (is_name("in")) {
                op = "in";
                advance();
            } else if (is_name("not") && peek().kind == TokenKind::kName && peek().text == "in") {
                op = "not in";
                advance();
                advance();
            } else {
                break;
            }
            if (!node) {
                node = make(Expr::Kind::kCompare, pos);
                node->a = std::move(first);
            }
            node->ops.push_back(op);
            node->items.push_back(parse_math1());
        }
        return node ? std::move(node) : std::move(first);
    }

    ExprPtr binary(std::string op, ExprPtr left, ExprPtr right, SourcePos pos) {
        ExprPtr node = make(Expr::Kind::kBinary, pos);
        node->name = std::move(op);
        node->a = std::move(left);
        node->b = std::move(right);
        return node;
    }

    ExprPtr parse_math1() {
        ExprPtr left = parse_concat();
        while (is_op("+") || is_op("-")) {
            const Token op = current();
            advance();
            left = binary(op.text, std::move(left), parse_concat(), op.pos);
        }
        return left;
    }

    ExprPtr parse_concat() {
        ExprPtr left = parse_math2();
        while (is_op("~")) {
            const SourcePos pos = current().pos;
            advance();
            left = binary("~", std::move(left), parse_math2(), pos);
        }
        return left;
    }

    ExprPtr parse_math2() {
        ExprPtr left = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const Token op = current();
            advance();
            left = binary(op.text, std::move(left), parse_pow(), op.pos);
        }
        return left;
    }

    ExprPtr parse_pow() {
        ExprPtr left = parse_unary(true);
        while (is_op("**")) {
            const SourcePos pos = current().pos;
            advance();
            left = binary("**", std::move(left), parse_unary(true), pos);
        }
        return left;
    }

    ExprPtr parse_unary(bool with_filter) {
        DepthGuard guard(*this);
        ExprPtr node;
        if (is_op("-") || is_op("+")) {
            node = make(Expr::Kind::kUnary, current().pos);
            node->name = current().text;
            advance();
            node->a = parse_unary(false);
        } else {
            node = parse_primary();
        }
        node = parse_postfix(std::move(node));
        if (with_filter) node = parse_filter_expr(std::move(node));
        return node;
    }

    ExprPtr parse_primary() {
        const Token token = current();
        switch (token.kind) {
            case TokenKind::kName: {
                advance();
                ExprPtr node = make(Expr::Kind::kLiteral, token.pos);
                if (token.text == "true" || token.text == "True") {
                    node->literal = true;
                } else if (token.text == "false" || token.text == "False") {
                    node->literal = false;
                } else if (token.text == "none" || token.text == "None") {
                    node->literal = None{};
                } else {
                    node->kind = Expr::Kind::kName;
                    node->name = token.text;
                }
                return node;
            }
            case TokenKind::kString: {
                std::string text;
                while (current().kind == TokenKind::kString) {
                    text += current().text;
                    advance();
                }
                ExprPtr node = make(Expr::Kind::kLiteral, token.pos);
                node->literal = std::move(text);
                return node;
            }
            case TokenKind::kInteger: {
                advance();
                std::int64_t value = 0;
                const auto result = std::from_chars(token.text.data(),
                                                    token.text.data() + token.text.size(), value);
                if (result.ec != std::errc())
                    error_at(token.pos, "integer literal " + token.text + " is out of range");
                ExprPtr node = make(Expr::Kind::kLiteral, token.pos);
                node->literal = value;
                return node;
            }
            case TokenKind::kFloat: {
                advance();
                ExprPtr node = make(Expr::Kind::kLiteral, token.pos);
                node->literal = std::strtod(token.text.c_str(), nullptr);
                return node;
            }
            case TokenKind::kOperator:
                break;
            default:
                error("expected an expression, got " + describe(token));
        }
        if (skip_op("(")) {
            if (skip_op(")")) return make(Expr::Kind::kTuple, token.pos);
            ExprPtr first = parse_expression(true);
            if (skip_op(")")) return first;
            ExprPtr tuple = make(Expr::Kind::kTuple, token.pos);
            tuple->items.push_back(std::move(first));
            while (skip_op(",")) {
                if (is_op(")")) break;
                tuple->items.push_back(parse_expression(true));
            }
            expect_op(")");
            return tuple;
        }
        if (skip_op("[")) {
            ExprPtr list = make(Expr::Kind::kList, token.pos);
            while (!skip_op("]")) {
                if (!list->items.empty()) expect_op(",");
                if (skip_op("]")) break;
                list->items.push_back(parse_expression(true));
            }
            return list;
        }
        if (skip_op("{")) {
            ExprPtr dict = make(Expr::Kind::kDict, token.pos);
            while (!skip_op("}")) {
                if (!dict->items.empty()) expect_op(",");
                if (skip_op("}")) break;
                dict->items.push_back(parse_expression(true));
                expect_op(":");
                dict->items.push_back(parse_expression(true));
            }
            return dict;
        }
        error("expected an expression, got " + describe(token));
    }

    ExprPtr parse_postfix(ExprPtr node) {
        while (true) {
            const SourcePos pos = current().pos;
            if (skip_op(".")) {
                if (current().kind == TokenKind::kInteger) {
                    ExprPtr item = make(Expr::Kind::kItem, pos);
                    item->a = std::move(node);
                    item->b = parse_primary();
                    node = std::move(item);
                } else {
                    ExprPtr attr = make(Expr::Kind::kAttr, pos);
                    attr->a = std::move(node);
                    attr->name = expect_name();
                    node = std::move(attr);
                }
            } else if (skip_op("[")) {
                node = parse_subscript(std::move(node), pos);
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_subscript(ExprPtr target, SourcePos pos) {
        ExprPtr parts[3];
        int colons = 0;
        while (!is_op("]")) {
            if (skip_op(":")) {
                if (++colons > 2) error("a slice has at most two ':'");
                continue;
            }
            if (parts[colons]) error("expected ']' or ':', got " + describe(current()));
            parts[colons] = parse_expression(true);
        }
        advance();
        if (colons == 0) {
            if (!parts[0]) error_at(pos, "empty subscript");
            ExprPtr item = make(Expr::Kind::kItem, pos);
            item->a = std::move(target);
            item->b = std::move(parts[0]);
            return item;
        }
        ExprPtr slice = make(Expr::Kind::kSlice, pos);
        slice->a = std::move(target);
        for (auto& part : parts) slice->items.push_back(std::move(part));
        return slice;
    }

    void parse_call_args(Expr& node) {
        expect_op("(");
        while (!skip_op(")")) {
            if (!node.items.empty() || !node.keywords.empty()) expect_op(",");
            if (skip_op(")")) break;
            if (current().kind == TokenKind::kName && peek().kind == TokenKind::kOperator &&
                peek().text == "=") {
                std::string name = current().text;
                advance();
                advance();
                node.keywords.emplace_back(std::move(name), parse_expression(true));
            } else {
                if (!node.keywords.empty()) error("positional argument follows keyword argument");
                node.items.push_back(parse_expression(true));
            }
        }
    }

    ExprPtr parse_call(ExprPtr callee) {
        ExprPtr call = make(Expr::Kind::kCall, current().pos);
        call->a = std::move(callee);
        parse_call_args(*call);
        return call;
    }

    std::string parse_dotted_name() {
        std::string name = expect_name();
        while (is_op(".") && peek().kind == TokenKind::kName) {
            advance();
            name += "." + expect_name();
        }
        return name;
    }

    // `| f(args) | g`; with `leading_pipe` false the first '|' is implied ({% filter f %}).
    ExprPtr parse_filter_chain(ExprPtr input, bool leading_pipe = true) {
        bool first = true;
        while ((first && !leading_pipe) || is_op("|")) {
            if (!(first && !leading_pipe)) advance();
            first = false;
            ExprPtr filter = make(Expr::Kind::kFilter, current().pos);
            filter->name = parse_dotted_name();
            filter->a = std::move(input);
            if (is_op("(")) parse_call_args(*filter);
            input = std::move(filter);
        }
        return input;
    }

    ExprPtr parse_filter_expr(ExprPtr node) {
        while (true) {
            if (is_op("|")) {
                node = parse_filter_chain(std::move(node));
            } else if (is_name("is")) {
                ExprPtr test = make(Expr::Kind::kTest, current().pos);
                advance();
                test->negated = skip_name("not");
                test->name = parse_dotted_name();
                test->a = std::move(node);
                if (is_op("(")) {
                    parse_call_args(*test);
                } else if ((current().kind == TokenKind::kName ||
                            current().kind == TokenKind::kString ||
                            current().kind == TokenKind::kInteger ||
                            current().kind == TokenKind::kFloat || is_op("(") || is_op("[") ||
                            is_op("{")) &&
                           !is_name("else") && !is_name("or") && !is_name("and")) {
                    if (is_name("is")) error("cannot chain multiple tests with 'is'");
                    test->items.push_back(parse_postfix(parse_primary()));
                }
                node = std::move(test);
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    std::vector<Token> tokens_;
    std::size_t index_ = 0;
    int expression_depth_ = 0;
    int statement_depth_ = 0;
    int loop_depth_ = 0;

    friend struct DepthGuard;
};

}  // namespace

Body parse_template(std::string_view source) {
    return Parser(tokenize_template(source)).parse();
}

}  // namespace llmserve::chat
