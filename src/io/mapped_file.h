// Read-only memory maps of whole files: weights are used in place, never copied.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace llmserve::io {

// Read-only, private memory map of a whole file. Move-only; unmaps on destruction.
// The mapped bytes never move, so spans into bytes() stay valid while the object (or whatever
// it was moved into) lives. An empty file maps to an empty span.
class MappedFile {
  public:
    // Errors (each naming the path and the errno text): kNotFound when the file does not exist,
    // kPermissionDenied when it cannot be read, kInvalidArgument when it is not a regular file,
    // kResourceExhausted when it cannot be mapped for lack of memory, kUnavailable otherwise.
    static MappedFile open(const std::filesystem::path& path);

    MappedFile() = default;  // maps nothing: bytes() is empty
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    const std::filesystem::path& path() const { return path_; }

  private:
    MappedFile(std::filesystem::path path, const std::byte* data, std::size_t size)
        : path_(std::move(path)), data_(data), size_(size) {}
    void unmap() noexcept;

    std::filesystem::path path_;
    const std::byte* data_ = nullptr;  // null when nothing is mapped (empty file, moved from)
    std::size_t size_ = 0;
};

}  // namespace llmserve::io
