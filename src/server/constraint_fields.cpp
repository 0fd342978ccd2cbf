#include "server/constraint_fields.h"

#include "grammar/constraint.h"

namespace llmserve::server::fields {
namespace {

using Kind = grammar::ConstraintSpec::Kind;

// Compiles `spec` into the request; a second constraint field is refused (which would win is not
// obvious).
void constrain(ApiRequest& request, grammar::ConstraintSpec spec) {
    if (request.options.constraint) {
        fail_param(spec.param, "'{}' cannot be combined with another output constraint ({})",
                   spec.param, request.options.constraint_field);
    }
    request.options.constraint_field = spec.param;
    request.options.constraint = grammar::compile_constraint(spec);
}

grammar::ConstraintSpec schema_spec(const Json& schema, const std::string& field) {
    if (!schema.is_object() && !schema.is_boolean()) {
        fail_malformed(field, "'{}' must be a JSON Schema (an object), got {}", field,
                       describe(schema));
    }
    return {Kind::kJsonSchema, schema.dump(), {}, field};
}

Field<ApiRequest> schema_field(const char* name) {
    return {name, [name](const Json& v, ApiRequest& r) { constrain(r, schema_spec(v, name)); }};
}

Field<ApiRequest> text_field(const char* name, Kind kind) {
    return {name, [name, kind](const Json& v, ApiRequest& r) {
                const std::string text = get_string(v, name);
                if (text.empty()) fail_param(name, "'{}' must not be empty", name);
                constrain(r, {kind, text, {}, name});
            }};
}

Field<ApiRequest> choice_field(const char* name) {
    return {name, [name](const Json& v, ApiRequest& r) {
                std::vector<std::string> choices = get_strings(v, name);
                if (choices.empty()) fail_param(name, "'{}' must list at least one string", name);
                constrain(r, {Kind::kChoice, {}, std::move(choices), name});
            }};
}

// OpenAI's {"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema",
// "strict"}}; like llama.cpp, "json_object" may carry a "schema" of its own.
void read_response_format(const Json& value, ApiRequest& request) {
    if (!value.is_object() || !value.contains("type")) {
        fail_malformed("response_format",
                       "'response_format' must be an object with a 'type', got {}",
                       describe(value));
    }
    const std::string type = get_string(value["type"], "response_format.type");
    if (type == "text") return;
    if (type == "json_object") {
        if (given(value, "schema")) {
            constrain(request, schema_spec(value["schema"], "response_format.schema"));
        } else {
            constrain(request, {Kind::kJsonObject, {}, {}, "response_format"});
        }
        return;
    }
    if (type != "json_schema") {
        fail_param("response_format.type",
                   "'response_format.type' must be text, json_object or json_schema; got '{}'",
                   type.substr(0, 64));
    }
    if (!given(value, "json_schema") || !value["json_schema"].is_object()) {
        fail_malformed("response_format.json_schema",
                       "'response_format.json_schema' must be an object with the 'schema'");
    }
    const Json& json_schema = value["json_schema"];
    if (!given(json_schema, "schema")) {
        fail_malformed("response_format.json_schema.schema",
                       "'response_format.json_schema.schema' is required");
    }
    // "strict" false or true: the output follows the schema either way (constrained decoding is
    // exact).
    if (given(json_schema, "strict"))
        get_bool(json_schema["strict"], "response_format.json_schema.strict");
    constrain(request, schema_spec(json_schema["schema"], "response_format.json_schema.schema"));
}

}  // namespace

std::vector<Field<ApiRequest>> openai_constraint_fields() {
    return {{"response_format", read_response_format},
            text_field("grammar", Kind::kGrammar),
            schema_field("json_schema"),
            schema_field("guided_json"),
            text_field("guided_regex", Kind::kRegex),
            choice_field("guided_choice")};
}

std::vector<Field<ApiRequest>> generate_constraint_fields() {
    return {schema_field("json_schema"), text_field("grammar", Kind::kGrammar),
            text_field("regex", Kind::kRegex), choice_field("choice")};
}

}  // namespace llmserve::server::fields
