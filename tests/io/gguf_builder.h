// Writes GGUF files byte by byte for the tests, so that each can damage one field.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::io::testing {

class GgufBuilder {
  public:
    struct Tensor {
        std::string name;
        std::vector<std::uint64_t> ne;  // ne[0] = row length
        std::uint32_t type = 0;         // ggml type number
        std::uint64_t offset = 0;
        std::uint64_t bytes = 0;  // data written for it (the builder fills 0, 1, 2, ...)
    };

    std::uint32_t version = 3;
    std::uint64_t alignment = 32;
    std::vector<Tensor> tensors;

    // Metadata, appended in call order (the value bytes as the file holds them).
    void u32(std::string_view key, std::uint32_t value) { entry(key, 4, raw(value)); }
    void i32(std::string_view key, std::int32_t value) { entry(key, 5, raw(value)); }
    void f32(std::string_view key, float value) { entry(key, 6, raw(value)); }
    void boolean(std::string_view key, bool value) {
        entry(key, 7, raw(static_cast<std::uint8_t>(value)));
    }
    void string(std::string_view key, std::string_view value) { entry(key, 8, str(value)); }
    void u64(std::string_view key, std::uint64_t value) { entry(key, 10, raw(value)); }
    void f64(std::string_view key, double value) { entry(key, 12, raw(value)); }
    void strings(std::string_view key, const std::vector<std::string>& values) {
        std::string body = raw(std::uint32_t{8}) + raw(std::uint64_t{values.size()});
        for (const auto& v : values) body += str(v);
        entry(key, 9, body);
    }
    void i32s(std::string_view key, const std::vector<std::int32_t>& values) {
        std::string body = raw(std::uint32_t{5}) + raw(std::uint64_t{values.size()});
        for (const auto v : values) body += raw(v);
        entry(key, 9, body);
    }
    // A raw entry: key, type number, value bytes.
    void entry(std::string_view key, std::uint32_t type, const std::string& value) {
        metadata_ += str(key) + raw(type) + value;
        ++metadata_count_;
    }

    // Adds a tensor placed after the previous one (aligned), `bytes` of data.
    void tensor(std::string name, std::vector<std::uint64_t> ne, std::uint32_t type,
                std::uint64_t bytes) {
        std::uint64_t offset = 0;
        if (!tensors.empty()) {
            const Tensor& last = tensors.back();
            offset = (last.offset + last.bytes + alignment - 1) / alignment * alignment;
        }
        tensors.push_back({std::move(name), std::move(ne), type, offset, bytes});
    }

    std::vector<std::byte> build() const {
        std::string out = "GGUF" + raw(version) + raw(std::uint64_t{tensors.size()}) +
                          raw(metadata_count_) + metadata_;
        for (const Tensor& t : tensors) {
            out += str(t.name) + raw(static_cast<std::uint32_t>(t.ne.size()));
            for (const auto n : t.ne) out += raw(n);
            out += raw(t.type) + raw(t.offset);
        }
        out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
        const std::size_t data_start = out.size();
        for (const Tensor& t : tensors) {
            if (t.offset > (std::uint64_t{1} << 32)) continue;  // a hostile offset: no data
            if (data_start + t.offset + t.bytes > out.size())
                out.resize(data_start + t.offset + t.bytes, '\0');
            for (std::uint64_t i = 0; i < t.bytes; ++i)
                out[data_start + t.offset + i] = static_cast<char>(i & 0xff);
        }
        std::vector<std::byte> bytes(out.size());
        std::memcpy(bytes.data(), out.data(), out.size());
        return bytes;
    }

    template <typename T>
    static std::string raw(T value) {
        std::string s(sizeof(T), '\0');
        std::memcpy(s.data(), &value, sizeof(T));
        return s;
    }
    static std::string str(std::string_view s) {
        return raw(std::uint64_t{s.size()}) + std::string(s);
    }

  private:
    std::string metadata_;
    std::uint64_t metadata_count_ = 0;
};

}  // namespace llmserve::io::testing
