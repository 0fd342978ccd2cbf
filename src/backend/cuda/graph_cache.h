// What the CUDA backend does with a recorded decode pass, and the graphs it keeps. Host-only, so
// the rules are unit-tested on any machine:
// - a new record runs eagerly once (scratch memory grows and cuBLAS warms up outside a capture),
//   is captured the second time and replayed after that; one whose capture failed stays eager;
// - graphs read memory that may be reallocated (scratch buffers): when its generation changes,
//   every graph is dropped (a record stays warm: the memory only grows);
// - at most `capacity` graphs are kept, the least recently used dropped first; two records with
//   the same hash never share a graph (records are compared whole).
// Graph is the backend's handle (cudaGraphExec_t: trivially copyable); `destroy` frees one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace llmserve::backend::cuda {

template <typename Graph>
class GraphCache {
    static_assert(std::is_trivially_copyable_v<Graph>);

  public:
    enum class Action { kEager, kCapture, kReplay };
    struct Decision {
        Action action = Action::kEager;
        Graph* graph = nullptr;  // kReplay: the graph to launch
    };

    GraphCache(std::size_t capacity, std::function<void(Graph&)> destroy)
        : capacity_(capacity), destroy_(std::move(destroy)) {}
    ~GraphCache() { clear(); }
    GraphCache(const GraphCache&) = delete;
    GraphCache& operator=(const GraphCache&) = delete;

    // Drops every graph when the memory they read was reallocated since they were captured.
    // True when graphs were dropped.
    bool invalidate_if_moved(std::size_t generation) {
        if (generation == generation_) return false;
        generation_ = generation;
        const bool dropped = !graphs_.empty();
        clear();
        return dropped;
    }

    Decision decide(std::uint64_t signature, std::span<const unsigned char> record) {
        if (const auto found = graphs_.find(signature);
            found != graphs_.end() && std::ranges::equal(found->second.record, record)) {
            lru_.splice(lru_.begin(), lru_, found->second.lru);
            return {Action::kReplay, &found->second.graph};
        }
        if (warm_.contains(signature) && !uncapturable_.contains(signature))
            return {Action::kCapture, nullptr};
        return {Action::kEager, nullptr};
    }

    void ran_eagerly(std::uint64_t signature) { remember(warm_, signature); }
    void capture_failed(std::uint64_t signature) { remember(uncapturable_, signature); }

    // Keeps a graph captured from `record`; returns it. Replaces a graph of another record with
    // the same hash, and drops the least recently used one when full.
    Graph& add(std::uint64_t signature, std::span<const unsigned char> record, Graph graph) {
        if (const auto same = graphs_.find(signature); same != graphs_.end())
            drop(same);
        else if (graphs_.size() >= capacity_ && !lru_.empty())
            drop(graphs_.find(lru_.back()));
        lru_.push_front(signature);
        try {
            Entry entry{graph, {record.begin(), record.end()}, lru_.begin()};
            return graphs_.emplace(signature, std::move(entry)).first->second.graph;
        } catch (...) {  // out of memory: keep the list and the map in step, free the graph
            lru_.pop_front();
            destroy_(graph);
            throw;
        }
    }

    void clear() {
        for (auto& [signature, entry] : graphs_) destroy_(entry.graph);
        graphs_.clear();
        lru_.clear();
    }

    std::size_t size() const { return graphs_.size(); }

  private:
    struct Entry {
        Graph graph;
        std::vector<unsigned char> record;
        std::list<std::uint64_t>::iterator lru;
    };

    void drop(typename std::unordered_map<std::uint64_t, Entry>::iterator entry) {
        destroy_(entry->second.graph);
        lru_.erase(entry->second.lru);
        graphs_.erase(entry);
    }

    // The sets stay bounded in a long-running server; forgetting a signature costs one eager pass
    // (or one more capture attempt).
    void remember(std::unordered_set<std::uint64_t>& set, std::uint64_t signature) {
        if (set.size() >= 4 * capacity_) set.clear();
        set.insert(signature);
    }

    std::size_t capacity_;
    std::function<void(Graph&)> destroy_;
    std::size_t generation_ = 0;
    std::unordered_map<std::uint64_t, Entry> graphs_;
    std::list<std::uint64_t> lru_;  // signatures, most recently used first
    std::unordered_set<std::uint64_t> warm_;
    std::unordered_set<std::uint64_t> uncapturable_;
};

}  // namespace llmserve::backend::cuda
