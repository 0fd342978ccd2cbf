// A small metrics registry rendered in the Prometheus text exposition format (version 0.0.4):
// counters, gauges and histograms with fixed buckets, each optionally split by labels.
// Thread-safe: handlers update metrics concurrently while /metrics renders them.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmserve::server {

// Label name -> value, in the order given (the registry keeps one child per distinct set).
using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
  public:
    void inc(double amount = 1.0);  // amount >= 0
    // Raises the counter to `total` (a monotonic total kept elsewhere, e.g. by the engine);
    // never lowers it.
    void advance_to(double total);
    double value() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0.0};
};

class Gauge {
  public:
    void set(double value) { value_.store(value, std::memory_order_relaxed); }
    void add(double amount);
    double value() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0.0};
};

class Histogram {
  public:
    // `upper_bounds` strictly increasing and finite; a +Inf bucket is implied.
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double value);

    struct Snapshot {
        std::vector<double> upper_bounds;
        std::vector<std::uint64_t> cumulative_counts;  // one per bound, then the +Inf bucket
        double sum = 0;
        std::uint64_t count = 0;
    };
    Snapshot snapshot() const;

  private:
    const std::vector<double> upper_bounds_;
    mutable std::mutex mutex_;
    std::vector<std::uint64_t> bucket_counts_;  // non-cumulative, +Inf last
    double sum_ = 0;
    std::uint64_t count_ = 0;
};

// Bucket bounds for latencies in seconds (1 ms .. 60 s) and for small counts (1 .. 512).
std::vector<double> latency_buckets_seconds();
std::vector<double> size_buckets();

class MetricsRegistry {
  public:
    // Each returns the metric for (name, labels), creating it on first use; the reference stays
    // valid for the registry's lifetime. A name is registered with one type and one help text:
    // asking for it as another type is a kInternal error. Names follow Prometheus rules.
    Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
    Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
    Histogram& histogram(std::string_view name, std::string_view help,
                         const std::vector<double>& upper_bounds, const Labels& labels = {});

    // Every family in name order, children in label order.
    std::string render() const;

  private:
    enum class Type { kCounter, kGauge, kHistogram };
    struct Family {
        Type type;
        std::string help;
        std::map<Labels, std::unique_ptr<Counter>> counters;
        std::map<Labels, std::unique_ptr<Gauge>> gauges;
        std::map<Labels, std::unique_ptr<Histogram>> histograms;
    };
    Family& family(std::string_view name, std::string_view help, Type type);

    mutable std::mutex mutex_;
    std::map<std::string, Family, std::less<>> families_;
};

// Prometheus label-value escaping: backslash, double quote and newline.
std::string escape_label_value(std::string_view value);

}  // namespace llmserve::server
