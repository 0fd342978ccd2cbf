// Python's arithmetic on template values (ints are 64-bit: overflow is an error, never a wrong
// number), string and list concatenation and repetition, `%` formatting and `in`.
#include <fmt/format.h>

#include <cmath>

#include "chat/builtins.h"
#include "common/error.h"

namespace llmserve::chat {
namespace {

[[noreturn]] void unsupported(std::string_view op, const Value& a, const Value& b) {
    fail(ErrorCode::kInvalidArgument,
         "chat template: unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(),
         b.type_name());
}

[[noreturn]] void overflow() {
    fail(ErrorCode::kInvalidArgument, "chat template: integer overflow (values are 64-bit)");
}

std::size_t saturating_product(std::size_t size, std::int64_t times) {
    std::size_t product = 0;
    if (__builtin_mul_overflow(size, static_cast<std::size_t>(times), &product)) return SIZE_MAX;
    return product;
}

Value repeat(Interpreter& interp, const Value& sequence, std::int64_t times) {
    if (times <= 0) return sequence.is_string() ? Value(std::string()) : Value(List{});
    if (sequence.is_string()) {
        const std::string& text = sequence.as_string();
        interp.charge(saturating_product(text.size(), times));
        std::string out;
        out.reserve(text.size() * static_cast<std::size_t>(times));
        for (std::int64_t i = 0; i < times; ++i) out += text;
        return out;
    }
    const List& list = sequence.as_list();
    interp.charge(saturating_product(list.size() * sizeof(Value), times));
    List out;
    for (std::int64_t i = 0; i < times; ++i) out.insert(out.end(), list.begin(), list.end());
    return out;
}

// Python's printf-style `format % values` for the conversions templates use (s r d i f %).
std::string percent_format(Interpreter& interp, const std::string& format, const Value& values) {
    const List args = values.is_tuple() ? values.as_list() : List{values};
    std::size_t next = 0;
    std::string out;
    for (std::size_t i = 0; i < format.size(); ++i) {
        if (format[i] != '%') {
            out += format[i];
            continue;
        }
        std::size_t j = i + 1;
        std::string spec;
        while (j < format.size() &&
               std::string_view("-+ 0#.0123456789").find(format[j]) != std::string_view::npos)
            spec += format[j++];
        if (j >= format.size())
            fail(ErrorCode::kInvalidArgument, "chat template: incomplete format in '%'");
        const char conversion = format[j];
        i = j;
        if (conversion == '%') {
            out += '%';
            continue;
        }
        if (next >= args.size())
            fail(ErrorCode::kInvalidArgument,
                 "chat template: not enough arguments for format string");
        const Value& arg = args[next++];
        std::string text;
        switch (conversion) {
            case 's':
                text = to_str(arg);
                break;
            case 'r':
                text = repr(arg);
                break;
            case 'd':
            case 'i':
                if (!arg.is_number())
                    fail(ErrorCode::kInvalidArgument,
                         "chat template: %{} format: a real number is required, not {}", conversion,
                         arg.type_name());
                text = std::to_string(arg.is_float() ? static_cast<std::int64_t>(arg.as_float())
                                                     : arg.to_int());
                break;
            case 'f':
            case 'F': {
                if (!arg.is_number())
                    fail(ErrorCode::kInvalidArgument,
                         "chat template: %f format: a real number is required, not {}",
                         arg.type_name());
                const std::size_t dot = spec.find('.');
                const long precision =
                    dot == std::string::npos ? 6 : std::strtol(spec.c_str() + dot + 1, nullptr, 10);
                text = fmt::format("{:.{}f}", arg.to_double(), std::clamp(precision, 0L, 50L));
                spec = spec.substr(0, dot);
                break;
            }
            default:
                fail(ErrorCode::kInvalidArgument,
                     "chat template: unsupported format character '{}' in '%'", conversion);
        }
        // Field width (flags first), at most 4096.
        const std::size_t digits_at = spec.find_first_not_of("-+ 0#");
        const auto width = static_cast<std::size_t>(std::clamp(
            digits_at == std::string::npos ? 0L
                                           : std::strtol(spec.c_str() + digits_at, nullptr, 10),
            0L, 4096L));
        if (width > code_point_count(text)) {
            const std::size_t pad = width - code_point_count(text);
            if (spec.find('-') != std::string::npos) {
                text.append(pad, ' ');
            } else {
                text.insert(0, pad, ' ');
            }
        }
        out += text;
    }
    if (next < args.size())
        fail(ErrorCode::kInvalidArgument,
             "chat template: not all arguments converted during string formatting");
    interp.charge(out.size());
    return out;
}

Value arithmetic(std::string_view op, const Value& a, const Value& b) {
    if (!a.is_float() && !b.is_float()) {
        const std::int64_t x = a.to_int();
        const std::int64_t y = b.to_int();
        std::int64_t r = 0;
        if (op == "+") {
            if (__builtin_add_overflow(x, y, &r)) overflow();
            return r;
        }
        if (op == "-") {
            if (__builtin_sub_overflow(x, y, &r)) overflow();
            return r;
        }
        if (op == "*") {
            if (__builtin_mul_overflow(x, y, &r)) overflow();
            return r;
        }
        if (op == "//" || op == "%") {
            if (y == 0)
                fail(ErrorCode::kInvalidArgument,
                     "chat template: integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) overflow();
            std::int64_t quotient = x / y;
            std::int64_t remainder = x % y;
            if (remainder != 0 && ((remainder < 0) != (y < 0))) {
                --quotient;
                remainder += y;
            }
            return op == "//" ? quotient : remainder;
        }
        if (op == "**" && y >= 0) {
            std::int64_t result = 1;
            std::int64_t base = x;
            for (std::int64_t e = y; e > 0;) {
                if ((e & 1) != 0 && __builtin_mul_overflow(result, base, &result)) overflow();
                e >>= 1;
                if (e > 0 && __builtin_mul_overflow(base, base, &base)) overflow();
            }
            return result;
        }
    }
    const double x = a.to_double();
    const double y = b.to_double();
    if (op == "+") return x + y;
    if (op == "-") return x - y;
    if (op == "*") return x * y;
    if (op == "/") {
        if (y == 0) fail(ErrorCode::kInvalidArgument, "chat template: division by zero");
        return x / y;
    }
    if (op == "//" || op == "%") {
        if (y == 0)
            fail(ErrorCode::kInvalidArgument, "chat template: float modulo or division by zero");
        // CPython's float_divmod.
        double remainder = std::fmod(x, y);
        double quotient = (x - remainder) / y;
        if (remainder != 0 && ((y < 0) != (remainder < 0))) {
            remainder += y;
            quotient -= 1.0;
        }
        double floored = std::floor(quotient);
        if (quotient - floored > 0.5) floored += 1.0;
        return op == "//" ? floored : remainder;
    }
    if (op == "**") {
        if (x == 0 && y < 0)
            fail(ErrorCode::kInvalidArgument,
                 "chat template: 0.0 cannot be raised to a negative power");
        return std::pow(x, y);
    }
    unsupported(op, a, b);
}

}  // namespace

Value binary_operation(Interpreter& interp, std::string_view op, const Value& a, const Value& b) {
    if (op == "~") {
        std::string text = to_str(a) + to_str(b);
        interp.charge(text.size());
        return text;
    }
    require_defined(a);
    require_defined(b);
    if (a.is_number() && b.is_number()) return arithmetic(op, a, b);
    if (op == "+") {
        if (a.is_string() && b.is_string()) {
            interp.charge(a.as_string().size() + b.as_string().size());
            return a.as_string() + b.as_string();
        }
        if (a.is_list() && b.is_list()) {
            List out = a.as_list();
            out.insert(out.end(), b.as_list().begin(), b.as_list().end());
            interp.charge(out.size() * sizeof(Value));
            return out;
        }
    }
    if (op == "*") {
        if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool()))
            return repeat(interp, a, b.to_int());
        if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool()))
            return repeat(interp, b, a.to_int());
    }
    if (op == "%" && a.is_string()) return percent_format(interp, a.as_string(), b);
    unsupported(op, a, b);
}

bool contains(const Value& container, const Value& item) {
    if (container.is_undefined()) return false;
    if (container.is_string()) {
        if (!item.is_string())
            fail(ErrorCode::kInvalidArgument,
                 "chat template: 'in <string>' requires string as left operand, not {}",
                 item.type_name());
        return container.as_string().find(item.as_string()) != std::string::npos;
    }
    if (container.is_list()) {
        for (const Value& value : container.as_list())
            if (equal(value, item)) return true;
        return false;
    }
    if (container.is_dict()) return container.as_dict().find(item) != nullptr;
    fail(ErrorCode::kInvalidArgument, "chat template: argument of type '{}' is not iterable",
         container.type_name());
}

}  // namespace llmserve::chat
