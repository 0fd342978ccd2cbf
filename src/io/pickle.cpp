#include "io/pickle.h"

#include "common/error.h"

#include <bit>
#include <cstring>

namespace llmserve::io::pickle {
namespace {

// The opcodes we run; see Python's Lib/pickletools.py for their definitions.
enum Opcode : std::uint8_t {
    kMark = '(',
    kStop = '.',
    kPop = '0',
    kPopMark = '1',
    kDup = '2',
    kBinFloat = 'G',
    kBinInt = 'J',
    kBinInt1 = 'K',
    kBinInt2 = 'M',
    kNone = 'N',
    kBinPersId = 'Q',
    kReduce = 'R',
    kBinUnicode = 'X',
    kEmptyList = ']',
    kAppend = 'a',
    kBuild = 'b',
    kGlobal = 'c',
    kDict = 'd',
    kAppends = 'e',
    kBinGet = 'h',
    kLongBinGet = 'j',
    kList = 'l',
    kBinPut = 'q',
    kLongBinPut = 'r',
    kSetItem = 's',
    kTuple = 't',
    kSetItems = 'u',
    kEmptyDict = '}',
    kEmptyTuple = ')',
    kProto = 0x80,
    kTuple1 = 0x85,
    kTuple2 = 0x86,
    kTuple3 = 0x87,
    kNewTrue = 0x88,
    kNewFalse = 0x89,
    kLong1 = 0x8a,
    kShortBinUnicode = 0x8c,
    kBinUnicode8 = 0x8d,
    kStackGlobal = 0x93,
    kMemoize = 0x94,
    kFrame = 0x95,
};

constexpr int kHighestProtocol = 5;

}  // namespace

void Hooks::build(Unpickler& machine, const Value&, const Value&) {
    fail(ErrorCode::kUnsupported, "{}: the pickle sets object state (BUILD), which is not allowed",
         machine.source());
}

Value Hooks::persistent_load(Unpickler& machine, const Value&) {
    fail(ErrorCode::kUnsupported,
         "{}: the pickle refers to a persistent object (BINPERSID), which is not allowed",
         machine.source());
}

Unpickler::Unpickler(std::span<const std::byte> pickle, std::string source, Hooks& hooks,
                     Limits limits)
    : pickle_(pickle), source_(std::move(source)), hooks_(hooks), limits_(limits) {}

std::string_view Unpickler::kind_name(Kind kind) {
    switch (kind) {
        case Kind::kNone:
            return "None";
        case Kind::kBool:
            return "bool";
        case Kind::kInt:
            return "int";
        case Kind::kFloat:
            return "float";
        case Kind::kString:
            return "str";
        case Kind::kTuple:
            return "tuple";
        case Kind::kList:
            return "list";
        case Kind::kDict:
            return "dict";
        case Kind::kObject:
            return "object";
    }
    return "?";
}

void Unpickler::corrupt(std::string_view what) const {
    fail(ErrorCode::kCorruptData, "{}: corrupt pickle at byte {}: {}", source_, opcode_offset_,
         what);
}

std::uint8_t Unpickler::read_byte() {
    return std::to_integer<std::uint8_t>(read_bytes(1)[0]);
}

std::uint64_t Unpickler::read_le(int width) {
    const auto bytes = read_bytes(width);
    std::uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i)
        value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    return value;
}

std::span<const std::byte> Unpickler::read_bytes(std::uint64_t count) {
    if (count > pickle_.size() - pos_) corrupt("the pickle ends in the middle of an opcode");
    const auto bytes = pickle_.subspan(pos_, count);
    pos_ += count;
    return bytes;
}

std::string_view Unpickler::read_line() {
    const auto rest = pickle_.subspan(pos_);
    const auto* begin = reinterpret_cast<const char*>(rest.data());
    const auto* newline = static_cast<const char*>(std::memchr(begin, '\n', rest.size()));
    if (newline == nullptr) corrupt("a GLOBAL name is not terminated by a newline");
    pos_ += static_cast<std::size_t>(newline - begin) + 1;
    return {begin, static_cast<std::size_t>(newline - begin)};
}

void Unpickler::push(Value value) {
    if (stack_.size() >= limits_.max_stack) {
        fail(ErrorCode::kResourceExhausted, "{}: the pickle's stack exceeds {} values", source_,
             limits_.max_stack);
    }
    stack_.push_back(value);
}

Value Unpickler::pop() {
    const std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() <= floor) corrupt("an opcode needs a value but the stack is empty");
    Value value = stack_.back();
    stack_.pop_back();
    return value;
}

Value& Unpickler::top() {
    const std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() <= floor) corrupt("an opcode needs a value but the stack is empty");
    return stack_.back();
}

std::size_t Unpickler::pop_mark() {
    if (marks_.empty()) corrupt("an opcode needs a MARK but there is none");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    return mark;
}

Value Unpickler::new_string(std::string_view text) {
    strings_.emplace_back(text);
    return {.kind = Kind::kString, .ref = static_cast<std::uint32_t>(strings_.size() - 1)};
}

Value Unpickler::new_container(Kind kind, std::span<const Value> items) {
    if (containers_.size() >= UINT32_MAX) {
        fail(ErrorCode::kResourceExhausted, "{}: the pickle makes too many containers", source_);
    }
    containers_.emplace_back();
    const Value container{.kind = kind, .ref = static_cast<std::uint32_t>(containers_.size() - 1)};
    extend(container, items);
    return container;
}

Value Unpickler::new_dict() {
    return new_container(Kind::kDict, {});
}

void Unpickler::extend(const Value& container, std::span<const Value> items) {
    container_items_ += items.size();
    if (container_items_ > limits_.max_container_items) {
        fail(ErrorCode::kResourceExhausted, "{}: the pickle's containers exceed {} items in all",
             source_, limits_.max_container_items);
    }
    auto& target = containers_[container.ref];
    target.insert(target.end(), items.begin(), items.end());
}

void Unpickler::memo_put(std::uint64_t index) {
    if (memo_.size() >= limits_.max_memo && !memo_.contains(index)) {
        fail(ErrorCode::kResourceExhausted, "{}: the pickle's memo exceeds {} entries", source_,
             limits_.max_memo);
    }
    memo_[index] = top();
}

Value Unpickler::memo_get(std::uint64_t index) const {
    const auto it = memo_.find(index);
    if (it == memo_.end())
        corrupt(fmt::format("memo entry {} is read before it is written", index));
    return it->second;
}

const Value& Unpickler::expect(const Value& value, Kind kind) const {
    if (value.kind != kind) {
        corrupt(fmt::format("expected a {}, found a {}", kind_name(kind), kind_name(value.kind)));
    }
    return value;
}

std::string_view Unpickler::text(const Value& value) const {
    return strings_[expect(value, Kind::kString).ref];
}

std::span<const Value> Unpickler::items(const Value& value) const {
    if (value.kind != Kind::kTuple && value.kind != Kind::kList) {
        corrupt(fmt::format("expected a tuple or list, found a {}", kind_name(value.kind)));
    }
    return containers_[value.ref];
}

std::span<const Value> Unpickler::dict_items(const Value& value) const {
    return containers_[expect(value, Kind::kDict).ref];
}

std::int64_t Unpickler::integer(const Value& value) const {
    return expect(value, Kind::kInt).number;
}

bool Unpickler::boolean(const Value& value) const {
    return expect(value, Kind::kBool).number != 0;
}

Value Unpickler::load() {
    while (true) {
        opcode_offset_ = pos_;
        if (pos_ >= pickle_.size()) corrupt("the pickle ends without a STOP opcode");
        const std::uint8_t opcode = read_byte();
        switch (opcode) {
            case kProto:
                if (read_byte() > kHighestProtocol) corrupt("unknown pickle protocol");
                break;
            case kFrame:
                read_le(8);
                break;  // framing is only a buffering hint
            case kStop:
                return pop();
            case kMark:
                if (marks_.size() >= limits_.max_marks) {
                    fail(ErrorCode::kResourceExhausted, "{}: the pickle nests more than {} MARKs",
                         source_, limits_.max_marks);
                }
                marks_.push_back(stack_.size());
                break;
            case kPop:
                pop();
                break;
            case kPopMark:
                stack_.resize(pop_mark());
                break;
            case kDup:
                push(top());
                break;
            case kNone:
                push({});
                break;
            case kNewTrue:
                push({.kind = Kind::kBool, .number = 1});
                break;
            case kNewFalse:
                push({.kind = Kind::kBool, .number = 0});
                break;
            case kBinInt:
                push({.kind = Kind::kInt,
                      .number = static_cast<std::int32_t>(static_cast<std::uint32_t>(read_le(4)))});
                break;
            case kBinInt1:
                push({.kind = Kind::kInt, .number = read_byte()});
                break;
            case kBinInt2:
                push({.kind = Kind::kInt, .number = static_cast<std::int64_t>(read_le(2))});
                break;
            case kLong1: {
                const int width = read_byte();
                if (width > 8) corrupt("LONG1 integer wider than 64 bits");
                std::uint64_t bits = width == 0 ? 0 : read_le(width);
                if (width > 0 && width < 8 && (bits >> (8 * width - 1)) != 0) {
                    bits |= ~std::uint64_t{0} << (8 * width);  // sign-extend
                }
                push({.kind = Kind::kInt, .number = static_cast<std::int64_t>(bits)});
                break;
            }
            case kBinFloat: {
                std::uint64_t bits = 0;
                for (const std::byte b : read_bytes(8))
                    bits = (bits << 8) | std::to_integer<std::uint64_t>(b);
                push({.kind = Kind::kFloat, .real = std::bit_cast<double>(bits)});
                break;
            }
            case kShortBinUnicode:
            case kBinUnicode:
            case kBinUnicode8: {
                const int width = opcode == kShortBinUnicode ? 1 : opcode == kBinUnicode ? 4 : 8;
                const auto bytes = read_bytes(read_le(width));
                push(new_string({reinterpret_cast<const char*>(bytes.data()), bytes.size()}));
                break;
            }
            case kEmptyTuple:
                push(new_container(Kind::kTuple, {}));
                break;
            case kTuple1:
            case kTuple2:
            case kTuple3: {
                const std::size_t count = opcode - kTuple1 + 1;
                Value items[3];
                for (std::size_t i = count; i-- > 0;) items[i] = pop();
                push(new_container(Kind::kTuple, std::span(items, count)));
                break;
            }
            case kTuple:
            case kList:
            case kDict: {
                const std::size_t mark = pop_mark();
                const std::span<const Value> items(stack_.data() + mark, stack_.size() - mark);
                if (opcode == kDict && items.size() % 2 != 0)
                    corrupt("DICT with an odd item count");
                const Kind kind = opcode == kTuple  ? Kind::kTuple
                                  : opcode == kList ? Kind::kList
                                                    : Kind::kDict;
                const Value container = new_container(kind, items);
                stack_.resize(mark);
                push(container);
                break;
            }
            case kEmptyList:
                push(new_container(Kind::kList, {}));
                break;
            case kEmptyDict:
                push(new_container(Kind::kDict, {}));
                break;
            case kAppend: {
                const Value item = pop();
                extend(expect(top(), Kind::kList), std::span(&item, 1));
                break;
            }
            case kSetItem: {
                Value pair[2];
                pair[1] = pop();
                pair[0] = pop();
                extend(expect(top(), Kind::kDict), pair);
                break;
            }
            case kAppends:
            case kSetItems: {
                const std::size_t mark = pop_mark();
                if (mark == 0 || mark <= (marks_.empty() ? 0 : marks_.back())) {
                    corrupt("APPENDS/SETITEMS has no container below its MARK");
                }
                const std::span<const Value> items(stack_.data() + mark, stack_.size() - mark);
                if (opcode == kSetItems && items.size() % 2 != 0) {
                    corrupt("SETITEMS with an odd item count");
                }
                extend(expect(stack_[mark - 1], opcode == kAppends ? Kind::kList : Kind::kDict),
                       items);
                stack_.resize(mark);
                break;
            }
            case kGlobal: {
                const std::string_view module = read_line();
                const std::string_view name = read_line();
                push(hooks_.find_class(*this, module, name));
                break;
            }
            case kStackGlobal: {
                const Value name = pop();
                const Value module = pop();
                push(hooks_.find_class(*this, text(module), text(name)));
                break;
            }
            case kReduce: {
                const Value args = pop();
                const Value callable = pop();
                expect(args, Kind::kTuple);
                push(hooks_.reduce(*this, callable, args));
                break;
            }
            case kBuild: {
                const Value state = pop();
                hooks_.build(*this, top(), state);
                break;
            }
            case kBinPersId: {
                const Value pid = pop();
                push(hooks_.persistent_load(*this, pid));
                break;
            }
            case kBinPut:
                memo_put(read_byte());
                break;
            case kLongBinPut:
                memo_put(read_le(4));
                break;
            case kMemoize:
                memo_put(memo_.size());
                break;
            case kBinGet:
                push(memo_get(read_byte()));
                break;
            case kLongBinGet:
                push(memo_get(read_le(4)));
                break;
            default:
                fail(ErrorCode::kUnsupported,
                     "{}: pickle opcode 0x{:02x} at byte {} is not one a checkpoint needs", source_,
                     opcode, opcode_offset_);
        }
    }
}

}  // namespace llmserve::io::pickle
