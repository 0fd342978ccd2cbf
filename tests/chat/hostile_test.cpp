// A template from an untrusted Hub repo: every limit stops it with a clear Error, and it can load
// no file and reach nothing but plain values.
#include <gtest/gtest.h>

#include "chat/chat_template.h"
#include "common/error.h"
#include "tests/common/expect_error.h"
#include "tests/common/scratch_dir.h"

namespace llmserve::chat {
namespace {

using llmserve::testing::expect_error;

std::string render(const std::string& source, const RenderLimits& limits = {}) {
    return ChatTemplate::from_source(source).with_limits(limits).render({});
}

std::string render_error(const std::string& source, const RenderLimits& limits = {}) {
    return expect_error(ErrorCode::kInvalidArgument, [&] { render(source, limits); });
}

TEST(HostileTemplate, OutputIsCapped) {
    RenderLimits limits;
    limits.max_output_bytes = 1000;
    EXPECT_EQ(render("{% for i in range(10) %}{{ 'x' * 100 }}{% endfor %}", limits).size(), 1000u);
    EXPECT_NE(render_error("{% for i in range(11) %}{{ 'x' * 100 }}{% endfor %}", limits)
                  .find("output exceeds 1000 bytes"),
              std::string::npos);
}

TEST(HostileTemplate, StepsAreCapped) {
    RenderLimits limits;
    limits.max_steps = 10'000;
    const std::string message = render_error(
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", limits);
    EXPECT_NE(message.find("more than 10000 steps"), std::string::npos) << message;
}

TEST(HostileTemplate, RecursionIsCapped) {
    RenderLimits limits;
    limits.max_call_depth = 20;
    const std::string countdown =
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}x{% endmacro %}";
    EXPECT_EQ(render(countdown + "{{ f(19) }}", limits), std::string(20, 'x'));
    EXPECT_NE(render_error(countdown + "{{ f(20) }}", limits).find("nested deeper than 20"),
              std::string::npos);
    EXPECT_NE(render_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
                  .find("macro calls are nested deeper"),
              std::string::npos);
}

TEST(HostileTemplate, ExpressionNestingIsCappedWhenParsing) {
    const std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
    const std::string message =
        expect_error(ErrorCode::kInvalidArgument, [&] { ChatTemplate::from_source(deep); });
    EXPECT_NE(message.find("nested deeper"), std::string::npos) << message;
    const std::string blocks = [] {
        std::string text;
        for (int i = 0; i < 5000; ++i) text += "{% if true %}";
        return text;
    }();
    EXPECT_NE(expect_error(ErrorCode::kInvalidArgument, [&] { ChatTemplate::from_source(blocks); })
                  .find("nested deeper"),
              std::string::npos);
}

TEST(HostileTemplate, MemoryIsCapped) {
    RenderLimits limits;
    limits.max_allocated_bytes = 1 << 20;
    EXPECT_NE(render_error("{% set s = 'x' * 2000000 %}", limits).find("bytes of values"),
              std::string::npos);
    EXPECT_NE(render_error("{% set ns = namespace(s='xx') %}{% for i in range(64) %}"
                           "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                           limits)
                  .find("bytes of values"),
              std::string::npos);
    EXPECT_NE(render_error("{{ range(1000000) | length }}").find("range too big"),
              std::string::npos);
}

TEST(HostileTemplate, CannotLoadOtherTemplatesOrFiles) {
    for (const std::string tag :
         {"{% include '/etc/passwd' %}", "{% import 'x.j2' as x %}", "{% from 'x.j2' import y %}",
          "{% extends 'base.j2' %}", "{% block body %}{% endblock %}"}) {
        const std::string message =
            expect_error(ErrorCode::kInvalidArgument, [&] { ChatTemplate::from_source(tag); });
        EXPECT_NE(message.find("is not allowed"), std::string::npos) << tag << ": " << message;
        EXPECT_NE(message.find("line 1:"), std::string::npos) << message;
    }
}

TEST(HostileTemplate, ReachesNoHostObject) {
    for (const std::string expression :
         {"''.__class__", "range.__globals__", "messages.__class__.__mro__", "namespace.__init__",
          "raise_exception.__code__", "(1).__class__"}) {
        const std::string message = render_error("{{ " + expression + " }}");
        EXPECT_NE(message.find("is not allowed"), std::string::npos)
            << expression << ": " << message;
    }
    // Only the globals Jinja2 and transformers define exist.
    EXPECT_EQ(render("{{ os is defined }}{{ open is defined }}{{ self is defined }}"
                     "{{ config is defined }}{{ lipsum is defined }}"),
              "FalseFalseFalseFalseFalse");
}

TEST(HostileTemplate, NamespaceCannotHoldItself) {
    EXPECT_NE(render_error("{% set ns = namespace() %}{% set ns.me = [ns] %}")
                  .find("cannot be stored inside itself"),
              std::string::npos);
}

TEST(HostileTemplate, DeepInputIsRefusedNotOverflowed) {
    nlohmann::json deep = nlohmann::json::array();
    nlohmann::json* innermost = &deep;
    for (int i = 0; i < 10000; ++i) {
        innermost->push_back(nlohmann::json::array());
        innermost = &innermost->back();
    }
    ChatTemplateInputs inputs;
    inputs.extra["deep"] = std::move(deep);
    const auto chat_template = ChatTemplate::from_source("{{ deep | tojson }}");
    EXPECT_NE(expect_error(ErrorCode::kInvalidArgument, [&] { chat_template.render(inputs); })
                  .find("nested deeper"),
              std::string::npos);
}

TEST(HostileTemplate, IntegerOverflowIsAnErrorNotAWrongNumber) {
    EXPECT_NE(render_error("{{ 9223372036854775807 + 1 }}").find("integer overflow"),
              std::string::npos);
    EXPECT_NE(render_error("{{ 2 ** 64 }}").find("integer overflow"), std::string::npos);
    EXPECT_NE(render_error("{{ 99999999999999999999 }}").find("out of range"), std::string::npos);
}

}  // namespace
}  // namespace llmserve::chat
