// A restricted unpickler: a stack machine for the binary pickle opcodes that torch.save emits
// (protocol 2, plus the few protocol-4 framing opcodes), with no way to import or call anything.
// Every GLOBAL, REDUCE, BUILD and persistent id is handed to the caller's Hooks, which decide what
// each means (or refuse). Nothing here can execute code named by the pickle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace llmserve::io::pickle {

enum class Kind { kNone, kBool, kInt, kFloat, kString, kTuple, kList, kDict, kObject };

// One value on the machine's stack. Strings and containers live in the Unpickler and are referred
// to by index, so copying a value (memo gets, DUP) is O(1) whatever it holds, and reference
// cycles a hostile pickle builds cannot leak.
struct Value {
    Kind kind = Kind::kNone;
    std::int64_t number = 0;  // kBool (0 or 1), kInt; kObject: the hooks' own tag
    double real = 0;          // kFloat
    std::uint32_t ref = 0;    // kString: text index; kTuple/kList/kDict: container index;
                              // kObject: the hooks' own index
};

// Bounds on what a pickle may make the machine hold; exceeding one is kResourceExhausted.
struct Limits {
    std::size_t max_stack = 1 << 20;            // values on the stack
    std::size_t max_marks = 1 << 12;            // nesting depth of MARKs
    std::size_t max_memo = 1 << 20;             // memo entries
    std::size_t max_container_items = 1 << 22;  // items across all tuples, lists and dicts
};

class Unpickler;

// What the pickle's references mean. Each hook either returns a value or throws llmserve::Error.
class Hooks {
  public:
    virtual ~Hooks() = default;
    // GLOBAL / STACK_GLOBAL "module.name": typically a kObject tag, or a refusal.
    virtual Value find_class(Unpickler& machine, std::string_view module,
                             std::string_view name) = 0;
    // REDUCE: the result of calling `callable` (a value find_class made) with the tuple `args`.
    virtual Value reduce(Unpickler& machine, const Value& callable, const Value& args) = 0;
    // BUILD: apply `state` to `target` (in place, as __setstate__ would); default refuses.
    virtual void build(Unpickler& machine, const Value& target, const Value& state);
    // BINPERSID: the object a persistent id (any value) stands for; default refuses.
    virtual Value persistent_load(Unpickler& machine, const Value& pid);
};

class Unpickler {
  public:
    // `source` names the pickle in error messages ("model.bin: data.pkl").
    Unpickler(std::span<const std::byte> pickle, std::string source, Hooks& hooks,
              Limits limits = {});

    // Runs the pickle to its STOP opcode and returns the value it leaves. Errors: kCorruptData
    // for malformed or truncated input (naming the opcode and byte offset), kUnsupported for an
    // opcode outside the supported set, kResourceExhausted when a limit is hit, plus whatever the
    // hooks throw.
    Value load();

    // Accessors for the hooks and the caller; kCorruptData when `value` is of another kind.
    std::string_view text(const Value& value) const;              // kString
    std::span<const Value> items(const Value& value) const;       // kTuple, kList
    std::span<const Value> dict_items(const Value& value) const;  // kDict: k0, v0, k1, v1...
    std::int64_t integer(const Value& value) const;               // kInt
    bool boolean(const Value& value) const;                       // kBool
    Value new_dict();                                             // empty kDict
    const std::string& source() const { return source_; }
    // "tuple", "str", ... for error messages.
    static std::string_view kind_name(Kind kind);

  private:
    std::uint8_t read_byte();
    std::uint64_t read_le(int width);
    std::span<const std::byte> read_bytes(std::uint64_t count);
    std::string_view read_line();
    void push(Value value);
    Value pop();
    Value& top();
    std::size_t pop_mark();  // the stack height at the innermost MARK
    Value new_string(std::string_view text);
    Value new_container(Kind kind, std::span<const Value> items);
    void extend(const Value& container, std::span<const Value> items);
    void memo_put(std::uint64_t index);
    Value memo_get(std::uint64_t index) const;
    [[noreturn]] void corrupt(std::string_view what) const;
    const Value& expect(const Value& value, Kind kind) const;

    std::span<const std::byte> pickle_;
    std::string source_;
    Hooks& hooks_;
    Limits limits_;
    std::size_t pos_ = 0;            // next byte to read
    std::size_t opcode_offset_ = 0;  // where the opcode being run started
    std::vector<Value> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<std::uint64_t, Value> memo_;
    std::deque<std::string> strings_;  // a deque: views into it survive new strings
    std::vector<std::vector<Value>> containers_;
    std::size_t container_items_ = 0;
};

}  // namespace llmserve::io::pickle
