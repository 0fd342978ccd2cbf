#include "server/reasoning.h"

namespace llmserve::server {
namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

std::string_view without_leading_newlines(std::string_view text) {
    while (!text.empty() && (text.front() == '\n' || text.front() == '\r')) text.remove_prefix(1);
    return text;
}

// How many bytes at the end of `text` could begin `tag`.
std::size_t partial_tag_suffix(std::string_view text, std::string_view tag) {
    for (std::size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n) {
        if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
    }
    return 0;
}

}  // namespace

ReasoningSplit split_reasoning(std::string_view text) {
    ReasoningSplit split;
    if (text.substr(0, kOpen.size()) != kOpen) {
        split.content = text;
        return split;
    }
    text.remove_prefix(kOpen.size());
    split.has_reasoning = true;
    const std::size_t close = text.find(kClose);
    if (close == std::string_view::npos) {
        split.reasoning = text;
        return split;
    }
    split.reasoning = text.substr(0, close);
    split.content = without_leading_newlines(text.substr(close + kClose.size()));
    return split;
}

ReasoningSplit ReasoningStream::feed(std::string_view piece) {
    pending_ += piece;
    return drain(false);
}

ReasoningSplit ReasoningStream::finish() {
    return drain(true);
}

ReasoningSplit ReasoningStream::drain(bool final) {
    ReasoningSplit out;
    if (phase_ == Phase::kOpening) {
        if (pending_.size() < kOpen.size() && kOpen.substr(0, pending_.size()) == pending_ &&
            !final) {
            return out;  // may still become <think>
        }
        if (pending_.substr(0, kOpen.size()) == kOpen) {
            pending_.erase(0, kOpen.size());
            phase_ = Phase::kReasoning;
        } else {
            phase_ = Phase::kContent;
        }
    }
    if (phase_ == Phase::kReasoning) {
        out.has_reasoning = true;
        const std::size_t close = pending_.find(kClose);
        if (close == std::string::npos) {
            const std::size_t hold = final ? 0 : partial_tag_suffix(pending_, kClose);
            out.reasoning = pending_.substr(0, pending_.size() - hold);
            pending_.erase(0, pending_.size() - hold);
            return out;
        }
        out.reasoning = pending_.substr(0, close);
        pending_.erase(0, close + kClose.size());
        phase_ = Phase::kContentStart;
    }
    if (phase_ == Phase::kContentStart) {
        pending_ = std::string(without_leading_newlines(pending_));
        if (pending_.empty()) return out;
        phase_ = Phase::kContent;
    }
    out.content = std::move(pending_);
    pending_.clear();
    return out;
}

}  // namespace llmserve::server
