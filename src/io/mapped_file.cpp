#include "io/mapped_file.h"

#include "common/error.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace llmserve::io {
namespace {

ErrorCode code_for_errno(int error) {
    switch (error) {
        case ENOENT:
        case ENOTDIR:
            return ErrorCode::kNotFound;
        case EACCES:
        case EPERM:
            return ErrorCode::kPermissionDenied;
        case ENOMEM:
        case EMFILE:
        case ENFILE:
            return ErrorCode::kResourceExhausted;
        default:
            return ErrorCode::kUnavailable;
    }
}

// Closes the descriptor on every path out of open(); the mapping outlives it.
struct FileDescriptor {
    int fd;
    ~FileDescriptor() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

MappedFile MappedFile::open(const std::filesystem::path& path) {
    FileDescriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (file.fd < 0) {
        const int error = errno;
        fail(code_for_errno(error), "{}: cannot open: {}", path.string(), std::strerror(error));
    }
    struct stat info {};
    if (::fstat(file.fd, &info) != 0) {
        const int error = errno;
        fail(code_for_errno(error), "{}: cannot stat: {}", path.string(), std::strerror(error));
    }
    if (!S_ISREG(info.st_mode)) {
        fail(ErrorCode::kInvalidArgument, "{}: not a regular file", path.string());
    }
    const auto size = static_cast<std::size_t>(info.st_size);
    if (size == 0) return MappedFile(path, nullptr, 0);  // mmap rejects empty lengths
    void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd, 0);
    if (data == MAP_FAILED) {
        const int error = errno;
        fail(code_for_errno(error), "{}: cannot map {} bytes: {}", path.string(), size,
             std::strerror(error));
    }
    return MappedFile(path, static_cast<const std::byte*>(data), size);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this != &other) {
        unmap();
        path_ = std::move(other.path_);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

MappedFile::~MappedFile() {
    unmap();
}

void MappedFile::unmap() noexcept {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
}

}  // namespace llmserve::io
