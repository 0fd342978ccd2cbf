#include "server/metrics.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/error.h"

namespace llmserve::server {
namespace {

bool contains_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(MetricsTest, CountersAndGaugesRenderWithLabels) {
    MetricsRegistry registry;
    registry.counter("requests_total", "Requests.", {{"route", "/generate"}, {"status", "200"}})
        .inc();
    registry.counter("requests_total", "Requests.", {{"route", "/generate"}, {"status", "200"}})
        .inc(2);
    registry.counter("requests_total", "Requests.", {{"route", "/x"}, {"status", "404"}}).inc();
    registry.gauge("running", "Running now.").set(3);
    registry.gauge("memory_bytes", "Memory.").set(1.5e9);
    const std::string text = registry.render();
    EXPECT_TRUE(contains_line(text, "# HELP requests_total Requests.")) << text;
    EXPECT_TRUE(contains_line(text, "# TYPE requests_total counter")) << text;
    EXPECT_TRUE(contains_line(text, "requests_total{route=\"/generate\",status=\"200\"} 3"))
        << text;
    EXPECT_TRUE(contains_line(text, "requests_total{route=\"/x\",status=\"404\"} 1")) << text;
    EXPECT_TRUE(contains_line(text, "# TYPE running gauge")) << text;
    EXPECT_TRUE(contains_line(text, "running 3")) << text;
    EXPECT_TRUE(contains_line(text, "memory_bytes 1500000000")) << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
    MetricsRegistry registry;
    Histogram& histogram = registry.histogram("latency_seconds", "Latency.", {0.1, 1, 10});
    for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) histogram.observe(v);
    const std::string text = registry.render();
    EXPECT_TRUE(contains_line(text, "# TYPE latency_seconds histogram")) << text;
    EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{le=\"0.1\"} 2")) << text;
    EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{le=\"1\"} 3")) << text;
    EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{le=\"10\"} 4")) << text;
    EXPECT_TRUE(contains_line(text, "latency_seconds_bucket{le=\"+Inf\"} 5")) << text;
    EXPECT_TRUE(contains_line(text, "latency_seconds_sum 55.65")) << text;
    EXPECT_TRUE(contains_line(text, "latency_seconds_count 5")) << text;
}

TEST(MetricsTest, LabelValuesAreEscaped) {
    EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    MetricsRegistry registry;
    registry.counter("c_total", "C.", {{"path", "x\"y"}}).inc();
    EXPECT_TRUE(contains_line(registry.render(), "c_total{path=\"x\\\"y\"} 1"));
}

TEST(MetricsTest, ATypeClashOrBadNameIsAnError) {
    MetricsRegistry registry;
    registry.counter("thing", "Thing.");
    EXPECT_THROW(registry.gauge("thing", "Thing."), Error);
    EXPECT_THROW(registry.counter("bad name", "x"), Error);
    EXPECT_THROW(Histogram({1, 1}), Error);
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
    MetricsRegistry registry;
    Counter& counter = registry.counter("hits_total", "Hits.");
    Histogram& histogram = registry.histogram("h", "H.", {1});
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 10000; ++i) {
                counter.inc();
                histogram.observe(0.5);
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(counter.value(), 40000);
    EXPECT_EQ(histogram.snapshot().count, 40000u);
}

}  // namespace
}  // namespace llmserve::server
