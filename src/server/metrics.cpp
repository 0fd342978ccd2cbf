#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace llmserve::server {
namespace {

void atomic_add(std::atomic<double>& target, double amount) {
    double current = target.load(std::memory_order_relaxed);
    while (!target.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
    }
}

// Prometheus numbers: integers without a fraction, others in shortest round-trip form.
std::string format_number(double value) {
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    if (std::isnan(value)) return "NaN";
    if (value == std::floor(value) && std::fabs(value) < 1e15) {
        return fmt::format("{}", static_cast<long long>(value));
    }
    return fmt::format("{}", value);
}

// `{a="x",b="y"}` (with `extra` appended), or "" when there are no labels.
std::string format_labels(const Labels& labels, const std::pair<std::string, std::string>* extra) {
    if (labels.empty() && extra == nullptr) return "";
    std::string out = "{";
    bool first = true;
    auto append = [&](const std::pair<std::string, std::string>& label) {
        if (!first) out += ',';
        first = false;
        out += fmt::format("{}=\"{}\"", label.first, escape_label_value(label.second));
    };
    for (const auto& label : labels) append(label);
    if (extra != nullptr) append(*extra);
    out += '}';
    return out;
}

bool valid_metric_name(std::string_view name) {
    if (name.empty() || std::isdigit(static_cast<unsigned char>(name.front()))) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
    });
}

std::string escape_help(std::string_view help) {
    std::string out;
    for (char c : help) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace

void Counter::inc(double amount) {
    if (amount > 0) atomic_add(value_, amount);
}

void Counter::advance_to(double total) {
    double current = value_.load(std::memory_order_relaxed);
    while (total > current &&
           !value_.compare_exchange_weak(current, total, std::memory_order_relaxed)) {
    }
}

void Gauge::add(double amount) {
    atomic_add(value_, amount);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), bucket_counts_(upper_bounds_.size() + 1, 0) {
    for (std::size_t i = 0; i < upper_bounds_.size(); ++i) {
        if (!std::isfinite(upper_bounds_[i]) ||
            (i > 0 && upper_bounds_[i] <= upper_bounds_[i - 1])) {
            fail(ErrorCode::kInternal, "histogram bucket bounds must be finite and increasing");
        }
    }
}

void Histogram::observe(double value) {
    if (std::isnan(value)) return;
    // First bucket whose upper bound is >= value (Prometheus buckets are "le").
    const auto bucket = static_cast<std::size_t>(
        std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) -
        upper_bounds_.begin());
    std::lock_guard lock(mutex_);
    ++bucket_counts_[bucket];
    sum_ += value;
    ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
    Snapshot snapshot;
    snapshot.upper_bounds = upper_bounds_;
    std::lock_guard lock(mutex_);
    std::uint64_t running = 0;
    for (std::uint64_t count : bucket_counts_) {
        running += count;
        snapshot.cumulative_counts.push_back(running);
    }
    snapshot.sum = sum_;
    snapshot.count = count_;
    return snapshot;
}

std::vector<double> latency_buckets_seconds() {
    return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::vector<double> size_buckets() {
    return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
}

MetricsRegistry::Family& MetricsRegistry::family(std::string_view name, std::string_view help,
                                                 Type type) {
    auto it = families_.find(name);
    if (it == families_.end()) {
        if (!valid_metric_name(name)) fail(ErrorCode::kInternal, "invalid metric name '{}'", name);
        it =
            families_.emplace(std::string(name), Family{type, std::string(help), {}, {}, {}}).first;
    } else if (it->second.type != type) {
        fail(ErrorCode::kInternal, "metric '{}' is already registered with another type", name);
    }
    return it->second;
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help,
                                  const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto& slot = family(name, help, Type::kCounter).counters[labels];
    if (!slot) slot = std::make_unique<Counter>();
    return *slot;
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto& slot = family(name, help, Type::kGauge).gauges[labels];
    if (!slot) slot = std::make_unique<Gauge>();
    return *slot;
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help,
                                      const std::vector<double>& upper_bounds,
                                      const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto& slot = family(name, help, Type::kHistogram).histograms[labels];
    if (!slot) slot = std::make_unique<Histogram>(upper_bounds);
    return *slot;
}

std::string MetricsRegistry::render() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& [name, family] : families_) {
        static constexpr std::string_view kTypeNames[] = {"counter", "gauge", "histogram"};
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(family.help), name,
                           kTypeNames[static_cast<int>(family.type)]);
        for (const auto& [labels, counter] : family.counters) {
            out += fmt::format("{}{} {}\n", name, format_labels(labels, nullptr),
                               format_number(counter->value()));
        }
        for (const auto& [labels, gauge] : family.gauges) {
            out += fmt::format("{}{} {}\n", name, format_labels(labels, nullptr),
                               format_number(gauge->value()));
        }
        for (const auto& [labels, histogram] : family.histograms) {
            const Histogram::Snapshot snap = histogram->snapshot();
            for (std::size_t i = 0; i < snap.cumulative_counts.size(); ++i) {
                const std::pair<std::string, std::string> le{
                    "le",
                    i < snap.upper_bounds.size() ? format_number(snap.upper_bounds[i]) : "+Inf"};
                out += fmt::format("{}_bucket{} {}\n", name, format_labels(labels, &le),
                                   snap.cumulative_counts[i]);
            }
            out += fmt::format("{}_sum{} {}\n", name, format_labels(labels, nullptr),
                               format_number(snap.sum));
            out += fmt::format("{}_count{} {}\n", name, format_labels(labels, nullptr), snap.count);
        }
    }
    return out;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '"':
                out += "\\\"";
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                out += c;
        }
    }
    return out;
}

}  // namespace llmserve::server
