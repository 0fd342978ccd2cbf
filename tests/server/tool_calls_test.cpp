// Tool calls on /v1/chat/completions: the format a template implies, the hermes and llama3_json
// parsers (whole and streamed), the call grammar of a forced tool_choice, and the request's 400s.
#include <gtest/gtest.h>

#include <random>
#include <stdexcept>

#include "chat/chat_template.h"
#include "common/error.h"
#include "grammar/constraint.h"
#include "server/chat_schema.h"
#include "server/errors.h"
#include "server/tool_calls.h"
#include "tests/common/test_paths.h"

namespace llmserve::server {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// The split a stream of `pieces` gives, put together as split_tool_calls() reports one.
ToolCallSplit stream_split(ToolCallFormat format, const std::vector<std::string>& pieces) {
    ToolCallStream stream(format);
    ToolCallSplit out;
    for (const std::string& piece : pieces) out.content += stream.feed(piece);
    ToolCallSplit rest = stream.finish();
    out.content += rest.content;
    out.calls = std::move(rest.calls);
    return out;
}

// `text` cut into pieces of every size from 1 to 5 bytes, each compared with the whole split.
void expect_stream_matches_whole(ToolCallFormat format, const std::string& text) {
    const ToolCallSplit whole = split_tool_calls(format, text);
    for (std::size_t size = 1; size <= 5; ++size) {
        std::vector<std::string> pieces;
        for (std::size_t i = 0; i < text.size(); i += size) pieces.push_back(text.substr(i, size));
        const ToolCallSplit streamed = stream_split(format, pieces);
        EXPECT_EQ(streamed.content, whole.content) << "piece size " << size << ": " << text;
        ASSERT_EQ(streamed.calls.size(), whole.calls.size()) << text;
        for (std::size_t i = 0; i < whole.calls.size(); ++i) {
            EXPECT_EQ(streamed.calls[i].name, whole.calls[i].name);
            EXPECT_EQ(streamed.calls[i].arguments, whole.calls[i].arguments);
        }
    }
}

TEST(ToolCallFormat, ComesFromTheTemplateUnlessTheSettingNamesOne) {
    EXPECT_EQ(tool_call_format_of_template("{{ '<tool_call>\\n' }}"), ToolCallFormat::kHermes);
    EXPECT_EQ(tool_call_format_of_template("{{- '<|python_tag|>' }}"), ToolCallFormat::kLlama3Json);
    EXPECT_EQ(tool_call_format_of_template("<|start_header_id|>"), ToolCallFormat::kLlama3Json);
    EXPECT_EQ(tool_call_format_of_template("{{ messages }}"), ToolCallFormat::kNone);
    EXPECT_EQ(tool_call_format("auto", "<tool_call>"), ToolCallFormat::kHermes);
    EXPECT_EQ(tool_call_format("none", "<tool_call>"), ToolCallFormat::kNone);
    EXPECT_EQ(tool_call_format("llama3_json", "<tool_call>"), ToolCallFormat::kLlama3Json);
    EXPECT_EQ(tool_call_format("hermes", ""), ToolCallFormat::kHermes);
}

// The published templates in tests/fixtures/tokenizers (DeepSeek V3 and Gemma 3 write calls in
// formats of their own, not read here).
TEST(ToolCallFormat, OfRealTemplates) {
    const auto format_of = [](const std::string& family) {
        const auto chat_template =
            chat::ChatTemplate::load(llmserve::testing::fixtures_dir() / "tokenizers" / family);
        if (!chat_template) throw std::runtime_error(family + " has no chat template");
        return tool_call_format_of_template(chat_template->source_for_tools());
    };
    EXPECT_EQ(format_of("qwen3"), ToolCallFormat::kHermes);
    EXPECT_EQ(format_of("llama3_1"), ToolCallFormat::kLlama3Json);
    EXPECT_EQ(format_of("llama3"), ToolCallFormat::kLlama3Json);
    EXPECT_EQ(format_of("deepseek_v3"), ToolCallFormat::kNone);
    EXPECT_EQ(format_of("gemma3"), ToolCallFormat::kNone);
}

TEST(HermesToolCalls, OneCall) {
    const ToolCallSplit split = split_tool_calls(
        ToolCallFormat::kHermes,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", "
        "\"days\": 2}}\n</tool_call>");
    EXPECT_EQ(split.content, "");
    ASSERT_EQ(split.calls.size(), 1u);
    EXPECT_EQ(split.calls[0].name, "get_weather");
    // Compact, in the model's key order.
    EXPECT_EQ(split.calls[0].arguments, R"({"city":"Paris","days":2})");
}

TEST(HermesToolCalls, SeveralCallsAfterText) {
    const std::string text =
        "Let me check both.\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": "
        "\"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": "
        "\"Rome\"}}\n</tool_call>\n";
    const ToolCallSplit split = split_tool_calls(ToolCallFormat::kHermes, text);
    EXPECT_EQ(split.content, "Let me check both.");
    ASSERT_EQ(split.calls.size(), 2u);
    EXPECT_EQ(split.calls[1].arguments, R"({"city":"Rome"})");
    expect_stream_matches_whole(ToolCallFormat::kHermes, text);
}

TEST(HermesToolCalls, ArgumentsMayBeAStringOrMissing) {
    const ToolCallSplit split = split_tool_calls(
        ToolCallFormat::kHermes,
        "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>"
        "<tool_call>{\"name\": \"g\"}</tool_call>");
    ASSERT_EQ(split.calls.size(), 2u);
    EXPECT_EQ(split.calls[0].arguments, R"({"a": 1})");
    EXPECT_EQ(split.calls[1].arguments, "{}");
}

TEST(HermesToolCalls, AnArgumentMayContainTheClosingTag) {
    const ToolCallSplit split = split_tool_calls(
        ToolCallFormat::kHermes,
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"</tool_call>\"}}\n</tool_call>");
    ASSERT_EQ(split.calls.size(), 1u);
    EXPECT_EQ(split.calls[0].arguments, R"({"q":"</tool_call>"})");
}

TEST(HermesToolCalls, ArgumentsNestedTooDeeplyAreContent) {
    const std::string deep = std::string(600, '[') + std::string(600, ']');
    const std::string text =
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": " + deep + "}}\n</tool_call>";
    const ToolCallSplit split = split_tool_calls(ToolCallFormat::kHermes, text);
    EXPECT_TRUE(split.calls.empty());
    EXPECT_EQ(split.content, text);
}

TEST(HermesToolCalls, AnUnclosedLastCallStillCounts) {
    const ToolCallSplit split = split_tool_calls(
        ToolCallFormat::kHermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n");
    ASSERT_EQ(split.calls.size(), 1u);
    EXPECT_EQ(split.calls[0].name, "f");
}

TEST(HermesToolCalls, ALastCallCutShortAfterCompleteOnesIsDropped) {
    const std::string first = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    for (const std::string cut : {"\n<tool_call>\n{\"name\": \"g\", \"argu", "\n<tool_ca",
                                  "\n<tool_call>\n", "\n<tool_call>{\"name\": \"g\"}\n</tool_"}) {
        const ToolCallSplit split = split_tool_calls(ToolCallFormat::kHermes, first + cut);
        ASSERT_GE(split.calls.size(), 1u) << cut;
        EXPECT_EQ(split.calls[0].name, "f");
        EXPECT_EQ(split.content, "");
        expect_stream_matches_whole(ToolCallFormat::kHermes, first + cut);
    }
    // A cut-short closing tag ends its (complete) call.
    EXPECT_EQ(
        split_tool_calls(ToolCallFormat::kHermes, first.substr(0, first.size() - 3)).calls.size(),
        1u);
}

TEST(HermesToolCalls, MalformedRepliesAreContent) {
    for (const std::string text : {
             "no call at all",
             "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>",  // bad JSON
             "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                         // no name
             "<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>",         // empty name
             "<tool_call>\n{\"name\": 3}\n</tool_call>",
             "<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>",
             "<tool_call>\n[\"f\"]\n</tool_call>",
             "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call> and then text",
             "<tool_call>\n{\"name\": \"f\", \"argu",  // cut short
             "<tool_call>",
             "<tool_c",
             "",
         }) {
        const ToolCallSplit split = split_tool_calls(ToolCallFormat::kHermes, text);
        EXPECT_EQ(split.content, text);
        EXPECT_TRUE(split.calls.empty()) << text;
        expect_stream_matches_whole(ToolCallFormat::kHermes, text);
    }
}

TEST(HermesToolCalls, StreamedContentIsNotHeldLongerThanNeeded) {
    ToolCallStream stream(ToolCallFormat::kHermes);
    EXPECT_EQ(stream.feed("Hello"), "Hello");
    EXPECT_EQ(stream.feed(" world <tool"), " world");  // "<tool" may open a call; " " precede it
    EXPECT_EQ(stream.feed("box> ok"), " <toolbox> ok");
    EXPECT_EQ(stream.feed("\n<tool_call>\n{\"name\": \"f\"}"), "");
    EXPECT_EQ(stream.feed("\n</tool_call>"), "");
    const ToolCallSplit rest = stream.finish();
    EXPECT_EQ(rest.content, "");
    ASSERT_EQ(rest.calls.size(), 1u);
    EXPECT_EQ(rest.calls[0].name, "f");
}

TEST(HermesToolCalls, StreamsMatchTheWholeSplit) {
    for (const std::string text : {
             "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": "
             "\"</tool_call>\"}}\n</tool_call>",
             "text  \n\n<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
             "a < b <tool_call>{\"name\": \"f\"}</tool_call>\n<tool_call>{\"name\": "
             "\"g\"}</tool_call>",
             "  spaced  ",
             "ends in <tool_call",
         }) {
        expect_stream_matches_whole(ToolCallFormat::kHermes, text);
    }
}

TEST(Llama3JsonToolCalls, TheWholeReplyIsTheCall) {
    for (const std::string text : {
             "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
             "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
             "\n {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}} \n",
         }) {
        const ToolCallSplit split = split_tool_calls(ToolCallFormat::kLlama3Json, text);
        EXPECT_EQ(split.content, "") << text;
        ASSERT_EQ(split.calls.size(), 1u) << text;
        EXPECT_EQ(split.calls[0].name, "get_weather");
        EXPECT_EQ(split.calls[0].arguments, R"({"city":"Paris"})");
        expect_stream_matches_whole(ToolCallFormat::kLlama3Json, text);
    }
}

TEST(Llama3JsonToolCalls, SeveralCallsAreSeparatedBySemicolons) {
    const std::string text =
        R"({"name": "a", "parameters": {"s": "x;}{"}}; {"name": "b", "parameters": {}})";
    const ToolCallSplit split = split_tool_calls(ToolCallFormat::kLlama3Json, text);
    ASSERT_EQ(split.calls.size(), 2u);
    EXPECT_EQ(split.calls[0].arguments, R"({"s":"x;}{"})");
    EXPECT_EQ(split.calls[1].name, "b");
    expect_stream_matches_whole(ToolCallFormat::kLlama3Json, text);
}

TEST(Llama3JsonToolCalls, ALastCallCutShortAfterCompleteOnesIsDropped) {
    const std::string text = R"({"name": "a", "parameters": {}}; {"name": "b", "param)";
    const ToolCallSplit split = split_tool_calls(ToolCallFormat::kLlama3Json, text);
    ASSERT_EQ(split.calls.size(), 1u);
    EXPECT_EQ(split.calls[0].name, "a");
    expect_stream_matches_whole(ToolCallFormat::kLlama3Json, text);
}

TEST(Llama3JsonToolCalls, OtherRepliesAreContent) {
    for (const std::string text : {
             "The weather is fine.",
             " {\"name\": \"f\", \"parameters\": {}} trailing words",
             "{\"city\": \"Paris\"}",  // JSON, but no call
             "Answer: {\"name\": \"f\", \"parameters\": {}}",
             "<|python_tag|>",
             "<|pyth",
             "{\"name\": \"f\"",
             "  ",
         }) {
        const ToolCallSplit split = split_tool_calls(ToolCallFormat::kLlama3Json, text);
        EXPECT_EQ(split.content, text);
        EXPECT_TRUE(split.calls.empty()) << text;
        expect_stream_matches_whole(ToolCallFormat::kLlama3Json, text);
    }
}

TEST(Llama3JsonToolCalls, PlainTextStreamsAtOnce) {
    ToolCallStream stream(ToolCallFormat::kLlama3Json);
    EXPECT_EQ(stream.feed("  "), "");
    EXPECT_EQ(stream.feed("Hi"), "  Hi");
    EXPECT_EQ(stream.feed(" {\"name\""), " {\"name\"");
}

TEST(NoToolCallFormat, EverythingIsContent) {
    const std::string text = "<tool_call>{\"name\": \"f\"}</tool_call>";
    EXPECT_EQ(split_tool_calls(ToolCallFormat::kNone, text).content, text);
    ToolCallStream stream;
    EXPECT_EQ(stream.feed(text), text);
    EXPECT_TRUE(stream.finish().calls.empty());
}

// The call grammar ----------------------------------------------------------------------------

const OrderedJson kTools = OrderedJson::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8},
                   "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city"], "additionalProperties": false}}},
  {"type": "function", "function": {"name": "ping"}},
  {"type": "function", "function": {"name": "odd_names", "parameters": {"type": "object",
    "properties": {"enum": {"$ref": "#/$defs/flag"}, "$ref": {"const": 1}},
    "required": ["enum"], "additionalProperties": false,
    "$defs": {"flag": {"type": "boolean"}}}}},
  {"type": "function", "function": {"name": "tree", "parameters": {"$ref": "#/$defs/node",
    "$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array",
      "items": {"$ref": "#/$defs/node"}, "maxItems": 2}}, "additionalProperties": false}}}}}
])");

bool grammar_accepts(const std::string& gbnf, std::string_view text) {
    const grammar::Constraint constraint(gbnf);
    grammar::Matcher matcher(constraint);
    for (const char c : text) {
        if (!matcher.accept(std::string_view(&c, 1))) return false;
    }
    return matcher.can_end();
}

TEST(ToolCallGrammar, HermesCallsToAnyTool) {
    const std::string gbnf = tool_call_gbnf(ToolCallFormat::kHermes, kTools, std::nullopt, true);
    const std::string weather =
        "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\","
        "\"unit\":\"celsius\"}}\n</tool_call>";
    const std::string ping = "<tool_call>\n{\"name\":\"ping\",\"arguments\":{}}\n</tool_call>";
    const std::string tree =
        "<tool_call>\n{\"name\":\"tree\",\"arguments\":{\"kids\":[{\"kids\":[]},{}]}}\n"
        "</tool_call>";
    EXPECT_TRUE(grammar_accepts(gbnf, weather));
    EXPECT_TRUE(grammar_accepts(gbnf, ping));
    EXPECT_TRUE(grammar_accepts(gbnf, tree));
    EXPECT_TRUE(grammar_accepts(gbnf,
                                "<tool_call>\n{\"name\":\"odd_names\",\"arguments\":"
                                "{\"enum\":true,\"$ref\":1}}\n</tool_call>"));
    EXPECT_TRUE(grammar_accepts(gbnf, weather + "\n" + ping));
    EXPECT_FALSE(grammar_accepts(gbnf,
                                 "<tool_call>\n{\"name\":\"nope\",\"arguments\":{}}\n"
                                 "</tool_call>"));
    EXPECT_FALSE(grammar_accepts(gbnf,
                                 "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":"
                                 "{\"unit\":\"celsius\"}}\n</tool_call>"));  // no city
    EXPECT_FALSE(grammar_accepts(gbnf, "Sure! " + ping));
    // Whatever the grammar accepts parses as those calls.
    const ToolCallSplit split = split_tool_calls(ToolCallFormat::kHermes, weather + "\n" + ping);
    ASSERT_EQ(split.calls.size(), 2u);
    EXPECT_EQ(split.calls[0].arguments, R"({"city":"Oslo","unit":"celsius"})");
}

TEST(ToolCallGrammar, ANamedFunctionWithoutParallelCalls) {
    const std::string gbnf =
        tool_call_gbnf(ToolCallFormat::kHermes, kTools, std::string("ping"), false);
    const std::string ping = "<tool_call>\n{\"name\":\"ping\",\"arguments\":{}}\n</tool_call>";
    EXPECT_TRUE(grammar_accepts(gbnf, ping));
    EXPECT_FALSE(grammar_accepts(gbnf, ping + "\n" + ping));
    EXPECT_FALSE(
        grammar_accepts(gbnf,
                        "<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"a\"}}\n"
                        "</tool_call>"));
}

TEST(ToolCallGrammar, Llama3JsonCalls) {
    const std::string gbnf =
        tool_call_gbnf(ToolCallFormat::kLlama3Json, kTools, std::nullopt, true);
    const std::string call = R"({"name":"get_weather","parameters":{"city":"Rome"}})";
    EXPECT_TRUE(grammar_accepts(gbnf, call));
    EXPECT_TRUE(grammar_accepts(gbnf, call + ";" + call));
    EXPECT_FALSE(grammar_accepts(gbnf, R"({"name":"get_weather","arguments":{"city":"Rome"}})"));
    const ToolCallSplit split = split_tool_calls(ToolCallFormat::kLlama3Json, call + ";" + call);
    EXPECT_EQ(split.calls.size(), 2u);
}

TEST(ToolCallGrammar, AnUnsupportedKeywordNamesTheToolsParameters) {
    const OrderedJson tools = OrderedJson::parse(R"([
      {"type": "function", "function": {"name": "f"}},
      {"type": "function", "function": {"name": "g", "parameters": {"type": "object",
        "properties": {"n": {"type": "number", "multipleOf": 3}}}}}])");
    try {
        tool_call_gbnf(ToolCallFormat::kHermes, tools, std::nullopt, true);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.param(), "tools[1].function.parameters");
        EXPECT_NE(std::string(e.what()).find("tools[1].function.parameters at /properties/n"),
                  std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("multipleOf"), std::string::npos) << e.what();
    }
    // Only the tools that may be called are compiled.
    EXPECT_NO_THROW(tool_call_gbnf(ToolCallFormat::kHermes, tools, std::string("f"), true));
}

// Random walks through the grammar always end in text that parses as calls to the tools.
TEST(ToolCallGrammar, EverySentenceParses) {
    const std::string gbnf = tool_call_gbnf(ToolCallFormat::kHermes, kTools, std::nullopt, true);
    const grammar::Constraint constraint(gbnf);
    std::mt19937 rng(7);
    for (int sample = 0; sample < 20; ++sample) {
        grammar::Matcher matcher(constraint);
        std::string text;
        while (text.size() < 1000) {
            if (matcher.can_end() && (!matcher.can_continue() || rng() % 8 == 0)) break;
            std::vector<char> allowed;
            for (int b = 0x20; b < 0x7f; ++b) {
                grammar::Matcher probe = matcher;
                if (probe.accept(std::string(1, static_cast<char>(b)))) allowed.push_back(b);
            }
            grammar::Matcher probe = matcher;
            if (probe.accept("\n")) allowed.push_back('\n');
            ASSERT_FALSE(allowed.empty()) << text;
            const char next = allowed[rng() % allowed.size()];
            ASSERT_TRUE(matcher.accept(std::string(1, next)));
            text += next;
        }
        if (!matcher.can_end()) continue;  // cut at the length bound
        const ToolCallSplit split = split_tool_calls(ToolCallFormat::kHermes, text);
        EXPECT_FALSE(split.calls.empty()) << text;
        EXPECT_EQ(split.content, "") << text;
    }
}

// The request's fields ------------------------------------------------------------------------

RequestLimits limits() {
    RequestLimits l;
    l.model_name = "tiny";
    l.vocab_size = 1000;
    l.n_positions = 64;
    l.default_max_new_tokens = 20;
    return l;
}

const Json kMessages = Json::array({{{"role", "user"}, {"content", "hi"}}});
const Json kWeatherTool = {
    {"type", "function"},
    {"function",
     {{"name", "get_weather"},
      {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}};

ApiRequest parse(Json body) {
    body["messages"] = kMessages;
    return parse_chat_request(body.dump(), limits());
}

// The param of the error parsing `body` gives.
std::string error_param(const Json& body) {
    try {
        parse(body);
    } catch (const Error& e) {
        return e.param();
    }
    return "(no error)";
}

TEST(ToolRequest, ToolChoiceDefaultsToAutoWithTools) {
    EXPECT_EQ(parse({{"tools", {kWeatherTool}}}).chat->tool_choice.mode, ToolChoice::Mode::kAuto);
    EXPECT_EQ(parse(Json::object()).chat->tool_choice.mode, ToolChoice::Mode::kNone);
    EXPECT_EQ(parse({{"tools", Json::array()}}).chat->tool_choice.mode, ToolChoice::Mode::kNone);
    const ApiRequest named =
        parse({{"tools", {kWeatherTool}},
               {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_weather"}}}}},
               {"parallel_tool_calls", false}});
    EXPECT_EQ(named.chat->tool_choice.mode, ToolChoice::Mode::kFunction);
    EXPECT_EQ(named.chat->tool_choice.function, "get_weather");
    EXPECT_FALSE(named.chat->parallel_tool_calls);
    EXPECT_EQ(
        parse({{"tools", {kWeatherTool}}, {"tool_choice", "required"}}).chat->tool_choice.mode,
        ToolChoice::Mode::kRequired);
    EXPECT_EQ(parse({{"tool_choice", "none"}}).chat->tool_choice.mode, ToolChoice::Mode::kNone);
}

TEST(ToolRequest, BadToolsNameTheField) {
    Json no_name = kWeatherTool;
    no_name["function"].erase("name");
    Json bad_name = kWeatherTool;
    bad_name["function"]["name"] = "get weather";
    Json bad_type = kWeatherTool;
    bad_type["type"] = "retrieval";
    Json bad_parameters = kWeatherTool;
    bad_parameters["function"]["parameters"] = "{}";
    EXPECT_EQ(error_param({{"tools", {kWeatherTool, no_name}}}), "tools[1].function.name");
    EXPECT_EQ(error_param({{"tools", {kWeatherTool, bad_name}}}), "tools[1].function.name");
    EXPECT_EQ(error_param({{"tools", {kWeatherTool, kWeatherTool}}}), "tools[1].function.name");
    EXPECT_EQ(error_param({{"tools", {bad_type}}}), "tools[0].type");
    EXPECT_EQ(error_param({{"tools", {bad_parameters}}}), "tools[0].function.parameters");
    EXPECT_EQ(error_param({{"tools", {{{"type", "function"}}}}}), "tools[0].function");
    EXPECT_EQ(error_param({{"tools", {"get_weather"}}}), "tools[0]");
    EXPECT_EQ(error_param({{"tools", kWeatherTool}}), "tools");
}

TEST(ToolRequest, BadToolChoicesNameTheField) {
    const Json tools = Json::array({kWeatherTool});  // braces alone copy kWeatherTool under clang
    EXPECT_EQ(error_param({{"tools", tools}, {"tool_choice", "always"}}), "tool_choice");
    EXPECT_EQ(error_param({{"tools", tools}, {"tool_choice", 1}}), "tool_choice");
    EXPECT_EQ(error_param({{"tool_choice", "required"}}), "tool_choice");
    EXPECT_EQ(error_param(
                  {{"tools", tools},
                   {"tool_choice", {{"type", "function"}, {"function", {{"name", "get_time"}}}}}}),
              "tool_choice.function.name");
    EXPECT_EQ(error_param({{"tools", tools}, {"tool_choice", {{"type", "function"}}}}),
              "tool_choice.function");
    EXPECT_EQ(error_param({{"tools", tools}, {"parallel_tool_calls", "yes"}}),
              "parallel_tool_calls");
    // A forced call is an output constraint of its own.
    EXPECT_EQ(error_param({{"tools", tools},
                           {"tool_choice", "required"},
                           {"response_format", {{"type", "json_object"}}}}),
              "tool_choice");
    EXPECT_NO_THROW(parse({{"tools", tools},
                           {"tool_choice", "auto"},
                           {"response_format", {{"type", "json_object"}}}}));
}

}  // namespace
}  // namespace llmserve::server
