// The pushdown automaton of one grammar, built lazily and shared by every matcher of that grammar.
// A parse position is a stack of grammar positions stored as a persistent linked list: nodes
// (position, parent) are interned, so equal stacks are the same node id and stacks share their
// tails. A state is the interned, sorted set of stacks the bytes so far leave open (several
// when the grammar is ambiguous), so equal states are equal ids and every derived fact is cached
// by id: byte transitions (a lazily filled table per state) and token masks (per vocabulary).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/vocabulary.h"

namespace llmserve::grammar {

using StateId = std::int32_t;
constexpr StateId kDeadState = -1;

struct AutomatonLimits {
    std::size_t max_stacks_per_state = 4096;  // parallel parses: more is a pathological grammar
    std::size_t max_nodes = 8'000'000;
    std::uint32_t max_depth = 2000;  // nested rule frames (e.g. JSON nesting)
    std::size_t mask_cache_bytes = std::size_t{64} << 20;
};

class Automaton {
  public:
    explicit Automaton(std::shared_ptr<const Grammar> grammar, AutomatonLimits limits = {});

    StateId initial_state();
    // The state after `bytes`, or kDeadState when the grammar does not allow them. Throws
    // Error(kResourceExhausted) past the limits.
    StateId advance(StateId state, std::string_view bytes);
    bool accepting(StateId state);         // the grammar may end here
    bool has_continuation(StateId state);  // some byte may follow
    // Allowed tokens of `vocabulary` in `state` as a bitmask of vocabulary.mask_words() words.
    void fill_mask(StateId state, const Vocabulary& vocabulary, std::span<std::uint32_t> mask);
    // Rough bytes held (nodes, states, tables, masks): the owner replaces an automaton that grew
    // too large.
    std::size_t memory_bytes();

  private:
    struct Node {
        std::uint32_t position;
        std::int32_t parent;  // -1: the root rule's frame
        std::uint32_t depth;  // frames below this one
    };
    struct Closure {
        std::vector<std::int32_t> stacks;  // nodes whose position is a byte element
        bool accepting = false;
    };
    struct State {
        std::vector<std::int32_t> stacks;
        bool accepting = false;
        std::unique_ptr<std::array<StateId, 256>> next;  // kUnknown until computed
    };
    static constexpr StateId kUnknown = -2;

    std::int32_t intern_node(std::uint32_t position, std::int32_t parent);
    const Closure& closure(std::int32_t node);
    StateId intern_state(std::vector<std::int32_t> stacks, bool accepting);
    StateId step(StateId state, std::uint8_t byte);
    StateId compute_step(StateId state, std::uint8_t byte);

    std::shared_ptr<const Grammar> grammar_;
    AutomatonLimits limits_;
    std::mutex mutex_;
    std::vector<Node> nodes_;
    std::unordered_map<std::uint64_t, std::int32_t> node_ids_;
    std::unordered_map<std::int32_t, Closure> closures_;
    std::vector<State> states_;
    std::unordered_map<std::string, StateId> state_ids_;
    StateId initial_ = kUnknown;
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> masks_;
    std::size_t mask_bytes_ = 0;
    std::size_t table_count_ = 0;
    std::vector<StateId> walk_states_;  // scratch of fill_mask: state per trie depth
};

}  // namespace llmserve::grammar
