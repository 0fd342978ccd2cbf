#include "grammar/automaton.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"

namespace llmserve::grammar {

Automaton::Automaton(std::shared_ptr<const Grammar> grammar, AutomatonLimits limits)
    : grammar_(std::move(grammar)), limits_(limits) {}

std::int32_t Automaton::intern_node(std::uint32_t position, std::int32_t parent) {
    const std::uint64_t key = (std::uint64_t{position} << 32) | static_cast<std::uint32_t>(parent);
    const auto [it, added] = node_ids_.try_emplace(key, static_cast<std::int32_t>(nodes_.size()));
    if (added) {
        const std::uint32_t depth = parent < 0 ? 0 : nodes_[parent].depth + 1;
        if (depth > limits_.max_depth)
            fail(ErrorCode::kResourceExhausted, "grammar: the output nests rules more than {} deep",
                 limits_.max_depth);
        if (nodes_.size() >= limits_.max_nodes)
            fail(ErrorCode::kResourceExhausted,
                 "grammar: the matcher needs more than {} parse nodes", limits_.max_nodes);
        nodes_.push_back(Node{position, parent, depth});
    }
    return it->second;
}

// The stacks `node` stands for once every rule reference at its top is expanded and every
// finished rule popped, so that each stack's top is a byte element. Memoized per node; left
// recursion (refused at compile) is the only way this could recurse forever.
const Automaton::Closure& Automaton::closure(std::int32_t node) {
    if (const auto it = closures_.find(node); it != closures_.end()) return it->second;
    const Grammar& g = *grammar_;
    const Node n = nodes_[node];
    const Element element = g.elements[n.position];
    Closure out;
    const auto merge = [&out](const Closure& c) {
        out.stacks.insert(out.stacks.end(), c.stacks.begin(), c.stacks.end());
        out.accepting = out.accepting || c.accepting;
    };
    switch (element.kind) {
        case Element::Kind::kBytes:
            out.stacks.push_back(node);
            break;
        case Element::Kind::kEnd:
            if (n.parent < 0)
                out.accepting = true;
            else
                merge(closure(n.parent));
            break;
        case Element::Kind::kRule: {
            // A reference in tail position returns straight to the caller's caller, so loops
            // written as right recursion (x* is R ::= x R | "") keep a constant depth.
            const bool tail = g.elements[n.position + 1].kind == Element::Kind::kEnd;
            const std::int32_t ret = tail ? n.parent : intern_node(n.position + 1, n.parent);
            for (const std::uint32_t start : g.rules[element.value].alternatives)
                merge(closure(intern_node(start, ret)));
            break;
        }
    }
    std::sort(out.stacks.begin(), out.stacks.end());
    out.stacks.erase(std::unique(out.stacks.begin(), out.stacks.end()), out.stacks.end());
    if (out.stacks.size() > limits_.max_stacks_per_state)
        fail(ErrorCode::kResourceExhausted,
             "grammar: more than {} parses are open at once; the grammar is too ambiguous",
             limits_.max_stacks_per_state);
    return closures_.emplace(node, std::move(out)).first->second;
}

StateId Automaton::intern_state(std::vector<std::int32_t> stacks, bool accepting) {
    std::sort(stacks.begin(), stacks.end());
    stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
    if (stacks.size() > limits_.max_stacks_per_state)
        fail(ErrorCode::kResourceExhausted,
             "grammar: more than {} parses are open at once; the grammar is too ambiguous",
             limits_.max_stacks_per_state);
    std::string key(stacks.size() * sizeof(std::int32_t) + 1, '\0');
    if (!stacks.empty())
        std::memcpy(key.data(), stacks.data(), stacks.size() * sizeof(std::int32_t));
    key.back() = accepting ? 1 : 0;
    const auto [it, added] =
        state_ids_.try_emplace(std::move(key), static_cast<StateId>(states_.size()));
    if (added) states_.push_back(State{std::move(stacks), accepting, nullptr});
    return it->second;
}

StateId Automaton::initial_state() {
    std::lock_guard lock(mutex_);
    if (initial_ == kUnknown) {
        Closure start;
        for (const std::uint32_t alt : grammar_->rules[grammar_->root].alternatives) {
            const Closure& c = closure(intern_node(alt, -1));
            start.stacks.insert(start.stacks.end(), c.stacks.begin(), c.stacks.end());
            start.accepting = start.accepting || c.accepting;
        }
        initial_ = intern_state(std::move(start.stacks), start.accepting);
    }
    return initial_;
}

StateId Automaton::compute_step(StateId state, std::uint8_t byte) {
    const Grammar& g = *grammar_;
    std::vector<std::int32_t> stacks;
    bool accepting = false;
    for (const std::int32_t node : states_[state].stacks) {
        const Node n = nodes_[node];
        if (!g.byte_sets[g.elements[n.position].value].test(byte)) continue;
        const Closure& c = closure(intern_node(n.position + 1, n.parent));
        stacks.insert(stacks.end(), c.stacks.begin(), c.stacks.end());
        accepting = accepting || c.accepting;
    }
    if (stacks.empty() && !accepting) return kDeadState;
    return intern_state(std::move(stacks), accepting);
}

StateId Automaton::step(StateId state, std::uint8_t byte) {
    if (!states_[state].next) {
        states_[state].next = std::make_unique<std::array<StateId, 256>>();
        states_[state].next->fill(kUnknown);
        ++table_count_;
    }
    StateId next = (*states_[state].next)[byte];
    if (next == kUnknown) {
        next = compute_step(state, byte);
        (*states_[state].next)[byte] = next;  // states_ may have grown: index again
    }
    return next;
}

StateId Automaton::advance(StateId state, std::string_view bytes) {
    std::lock_guard lock(mutex_);
    for (const char c : bytes) {
        state = step(state, static_cast<std::uint8_t>(c));
        if (state == kDeadState) return kDeadState;
    }
    return state;
}

bool Automaton::accepting(StateId state) {
    std::lock_guard lock(mutex_);
    return states_[state].accepting;
}

bool Automaton::has_continuation(StateId state) {
    std::lock_guard lock(mutex_);
    return !states_[state].stacks.empty();
}

void Automaton::fill_mask(StateId state, const Vocabulary& vocabulary,
                          std::span<std::uint32_t> mask) {
    std::lock_guard lock(mutex_);
    const std::size_t words = vocabulary.mask_words();
    if (mask.size() != words)
        fail(ErrorCode::kInternal, "grammar: a mask of {} words for a vocabulary of {}",
             mask.size(), words);
    const std::uint64_t key = (vocabulary.id() << 32) | static_cast<std::uint32_t>(state);
    if (const auto it = masks_.find(key); it != masks_.end()) {
        std::copy(it->second.begin(), it->second.end(), mask.begin());
        return;
    }
    std::fill(mask.begin(), mask.end(), 0u);
    const auto set = [&mask](TokenId id) { mask[id >> 5] |= 1u << (id & 31); };
    if (!states_[state].stacks.empty()) {
        const auto& nodes = vocabulary.nodes();
        const auto& node_tokens = vocabulary.node_tokens();
        walk_states_.resize(vocabulary.max_depth() + 1);
        walk_states_[0] = state;
        for (std::size_t i = 0; i < nodes.size();) {
            const TrieNode& node = nodes[i];
            const StateId next = step(walk_states_[node.depth - 1], node.byte);
            if (next == kDeadState) {
                i = node.subtree_end;
                continue;
            }
            walk_states_[node.depth] = next;
            for (std::uint32_t t = node.tokens_begin; t < node.tokens_end; ++t) set(node_tokens[t]);
            ++i;
        }
    }
    if (states_[state].accepting)
        for (const TokenId eos : vocabulary.eos_ids()) set(eos);
    const std::size_t bytes = words * sizeof(std::uint32_t);
    if (mask_bytes_ + bytes > limits_.mask_cache_bytes) {
        masks_.clear();
        mask_bytes_ = 0;
    }
    masks_.emplace(key, std::vector<std::uint32_t>(mask.begin(), mask.end()));
    mask_bytes_ += bytes;
}

std::size_t Automaton::memory_bytes() {
    std::lock_guard lock(mutex_);
    return nodes_.size() * (sizeof(Node) + 32) + states_.size() * 96 +
           table_count_ * sizeof(std::array<StateId, 256>) + mask_bytes_;
}

}  // namespace llmserve::grammar
