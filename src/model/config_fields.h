// Typed, checked access to the fields of a config.json object, shared by the family readers
// (internal to src/model).
#pragma once

#include <array>
#include <climits>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"
#include "io/json_util.h"
#include "model/config.h"

namespace llmserve::model {

using io::Json;

// Typed, checked access to the fields of one JSON object; every error names the source and field.
class Fields {
  public:
    Fields(const Json& object, const std::string& source) : object_(object), source_(source) {
        if (!object.is_object()) {
            fail(ErrorCode::kCorruptData, "{}: is {}, expected a JSON object", source,
                 io::describe_json(object));
        }
    }

    const std::string& source() const { return source_; }
    // Whether the key is there at all (null included).
    bool contains(std::string_view name) const { return object_.find(name) != object_.end(); }
    // A JSON object field (nullptr when absent or null); kCorruptData when it is something else.
    const Json* object(std::string_view name) const {
        const Json* value = find(name);
        if (value != nullptr && !value->is_object())
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected an object or null",
                 source_, name, io::describe_json(*value));
        return value;
    }

    // The field, or nullptr when it is absent or null.
    const Json* find(std::string_view name) const {
        const auto it = object_.find(name);
        return it == object_.end() || it->is_null() ? nullptr : &*it;
    }

    // An integer in [minimum, INT_MAX]; nullopt when absent or null.
    std::optional<int> integer(std::string_view name, int minimum,
                               std::string_view expected) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        return to_int(*value, name, minimum, expected);
    }

    int to_int(const Json& value, std::string_view name, int minimum,
               std::string_view expected) const {
        const auto number = io::json_to_int64(value);
        if (!number || *number < minimum || *number > INT_MAX) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected {}", source_, name,
                 io::describe_json(value), expected);
        }
        return static_cast<int>(*number);
    }

    // A positive size, under `name` or else under the Hugging Face alias.
    int required_size(std::string_view name, std::string_view alias) const {
        std::string_view present = name;
        if (object_.find(name) == object_.end() && object_.find(alias) != object_.end()) {
            present = alias;
        }
        const auto it = object_.find(present);
        if (it == object_.end()) {
            fail(ErrorCode::kCorruptData, "{}: missing required field '{}'", source_, name);
        }
        return to_int(*it, present, 1, "a positive integer");
    }

    std::optional<bool> boolean(std::string_view name) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        if (!value->is_boolean()) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected true or false", source_,
                 name, io::describe_json(*value));
        }
        return value->get<bool>();
    }

    // A finite number in [minimum, maximum] (an open lower bound when `exclusive_minimum`).
    std::optional<double> number(std::string_view name, double minimum, double maximum,
                                 bool exclusive_minimum, std::string_view expected) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        const double number = value->is_number() ? value->get<double>() : NAN;
        const bool above_minimum = exclusive_minimum ? number > minimum : number >= minimum;
        if (!std::isfinite(number) || !above_minimum || number > maximum) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected {}", source_, name,
                 io::describe_json(*value), expected);
        }
        return number;
    }
    std::optional<float> real(std::string_view name, double minimum, double maximum,
                              bool exclusive_minimum, std::string_view expected) const {
        const auto value = number(name, minimum, maximum, exclusive_minimum, expected);
        if (!value) return std::nullopt;
        return static_cast<float>(*value);
    }

    std::optional<std::string_view> string(std::string_view name) const {
        const Json* value = find(name);
        if (value == nullptr) return std::nullopt;
        if (!value->is_string()) {
            fail(ErrorCode::kCorruptData, "{}: field '{}' is {}, expected a string", source_, name,
                 io::describe_json(*value));
        }
        return value->get_ref<const std::string&>();
    }

    // "eos_token_id": a token id or a list of them; empty when absent or null.
    std::vector<int> token_id_list(std::string_view name) const {
        constexpr std::string_view kExpected = "a non-negative token id or a list of them";
        const Json* value = find(name);
        if (value == nullptr) return {};
        if (!value->is_array()) return {to_int(*value, name, 0, kExpected)};
        std::vector<int> ids;
        for (const Json& element : *value) ids.push_back(to_int(element, name, 0, kExpected));
        return ids;
    }

  private:
    const Json& object_;
    const std::string& source_;
};

inline constexpr std::array<std::pair<std::string_view, Activation>, 7> kActivations{{
    {"gelu_new", Activation::kGeluNew},
    {"gelu", Activation::kGelu},
    {"gelu_fast", Activation::kGeluFast},
    {"gelu_pytorch_tanh", Activation::kGeluPytorchTanh},
    {"relu", Activation::kRelu},
    {"silu", Activation::kSilu},
    {"swish", Activation::kSilu},
}};

inline constexpr std::string_view kTokenId = "a non-negative token id";
// Finite doubles above this do not fit a float.
inline constexpr double kFloatMax = std::numeric_limits<float>::max();

inline Activation parse_activation(std::string_view name, std::string_view field,
                                   const std::string& source) {
    for (const auto& [spelling, activation] : kActivations) {
        if (spelling == name) return activation;
    }
    std::string allowed;
    for (const auto& entry : kActivations) {
        allowed += allowed.empty() ? "" : ", ";
        allowed += entry.first;
    }
    fail(ErrorCode::kUnsupported, "{}: {} '{}' is not supported (supported: {})", source, field,
         name, allowed);
}

}  // namespace llmserve::model
