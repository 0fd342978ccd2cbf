#include "engine/request.h"

namespace llmserve::engine {

std::string_view to_string(FinishReason reason) {
    switch (reason) {
        case FinishReason::kLength:
            return "length";
        case FinishReason::kEos:
            return "eos";
        case FinishReason::kStop:
            return "stop";
        case FinishReason::kTimeout:
            return "timeout";
        case FinishReason::kCancelled:
            return "cancelled";
        case FinishReason::kError:
            return "error";
    }
    return "unknown";
}

std::optional<StreamEvent> RequestHandle::next_event(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return !events_.empty() || result_.has_value(); });
    if (events_.empty()) return std::nullopt;
    StreamEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
}

bool RequestHandle::finished() const {
    std::lock_guard lock(mutex_);
    return result_.has_value() && events_.empty();
}

RequestResult RequestHandle::wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return result_.has_value(); });
    events_.clear();
    return *result_;
}

void RequestHandle::cancel() {
    std::lock_guard lock(mutex_);
    cancel_requested_ = true;
}

bool RequestHandle::cancel_requested() const {
    std::lock_guard lock(mutex_);
    return cancel_requested_;
}

void RequestHandle::push_event(StreamEvent event) {
    {
        std::lock_guard lock(mutex_);
        events_.push_back(std::move(event));
    }
    changed_.notify_all();
}

void RequestHandle::complete(RequestResult result) {
    {
        std::lock_guard lock(mutex_);
        result_ = std::move(result);
    }
    changed_.notify_all();
}

}  // namespace llmserve::engine
