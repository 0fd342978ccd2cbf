#include "io/zip_reader.h"

#include "common/error.h"

#include <cstring>

namespace llmserve::io {
namespace {

constexpr std::uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr std::uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr std::uint32_t kEndOfCentralDirSignature = 0x06054b50;
constexpr std::uint32_t kZip64EndOfCentralDirSignature = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr std::uint16_t kZip64ExtraId = 0x0001;

constexpr std::size_t kLocalHeaderSize = 30;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::size_t kEndOfCentralDirSize = 22;
constexpr std::size_t kZip64LocatorSize = 20;
constexpr std::size_t kZip64EndOfCentralDirSize = 56;
constexpr std::size_t kMaxCommentSize = 0xffff;

// Little-endian unsigned integer of `width` bytes at `bytes[pos]`; the caller checked bounds.
std::uint64_t read_le(std::span<const std::byte> bytes, std::uint64_t pos, int width) {
    std::uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) {
        value = (value << 8) | std::to_integer<std::uint64_t>(bytes[pos + i]);
    }
    return value;
}

// bytes[offset, offset + size), or kCorruptData naming `what` when it is not inside `bytes`.
std::span<const std::byte> checked_slice(std::span<const std::byte> bytes, std::uint64_t offset,
                                         std::uint64_t size, const std::string& source,
                                         std::string_view what) {
    if (offset > bytes.size() || size > bytes.size() - offset) {
        fail(ErrorCode::kCorruptData,
             "{}: damaged zip archive: {} at offset {} ({} bytes) lies outside the {}-byte file",
             source, what, offset, size, bytes.size());
    }
    return bytes.subspan(offset, size);
}

struct CentralDirectory {
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
    std::uint64_t entry_count = 0;
};

// The end-of-central-directory record sits in the last 22 + 65535 bytes (it ends with a comment
// of up to 64 KiB); search backwards so that a signature inside the comment cannot win.
std::uint64_t find_end_of_central_directory(std::span<const std::byte> archive,
                                            const std::string& source) {
    if (archive.size() < kEndOfCentralDirSize) {
        fail(ErrorCode::kCorruptData,
             "{}: damaged zip archive: {} bytes is too short to hold an end-of-central-directory "
             "record",
             source, archive.size());
    }
    const std::uint64_t last = archive.size() - kEndOfCentralDirSize;
    const std::uint64_t first = last > kMaxCommentSize ? last - kMaxCommentSize : 0;
    for (std::uint64_t pos = last + 1; pos-- > first;) {
        if (read_le(archive, pos, 4) == kEndOfCentralDirSignature &&
            pos + kEndOfCentralDirSize + read_le(archive, pos + 20, 2) <= archive.size()) {
            return pos;
        }
    }
    fail(ErrorCode::kCorruptData,
         "{}: damaged zip archive: no end-of-central-directory record (file truncated?)", source);
}

CentralDirectory read_central_directory_location(std::span<const std::byte> archive,
                                                 const std::string& source) {
    const std::uint64_t eocd = find_end_of_central_directory(archive, source);
    if (read_le(archive, eocd + 4, 2) != 0 || read_le(archive, eocd + 6, 2) != 0) {
        fail(ErrorCode::kUnsupported, "{}: multi-disk zip archives are not supported", source);
    }
    CentralDirectory dir{read_le(archive, eocd + 16, 4), read_le(archive, eocd + 12, 4),
                         read_le(archive, eocd + 10, 2)};

    // A zip64 locator right before the record holds the 64-bit values (torch always writes one).
    const bool has_locator = eocd >= kZip64LocatorSize && read_le(archive, eocd - kZip64LocatorSize,
                                                                  4) == kZip64LocatorSignature;
    if (!has_locator) {
        if (dir.entry_count == 0xffff || dir.size == 0xffffffff || dir.offset == 0xffffffff) {
            fail(ErrorCode::kCorruptData,
                 "{}: damaged zip archive: the end-of-central-directory record needs zip64 "
                 "values but there is no zip64 locator",
                 source);
        }
        return dir;
    }
    const std::uint64_t locator = eocd - kZip64LocatorSize;
    const auto record =
        checked_slice(archive, read_le(archive, locator + 8, 8), kZip64EndOfCentralDirSize, source,
                      "the zip64 end-of-central-directory record");
    if (read_le(record, 0, 4) != kZip64EndOfCentralDirSignature) {
        fail(ErrorCode::kCorruptData,
             "{}: damaged zip archive: bad zip64 end-of-central-directory signature", source);
    }
    if (read_le(record, 16, 4) != 0 || read_le(record, 20, 4) != 0) {
        fail(ErrorCode::kUnsupported, "{}: multi-disk zip archives are not supported", source);
    }
    return {read_le(record, 48, 8), read_le(record, 40, 8), read_le(record, 32, 8)};
}

struct Zip64Values {
    std::uint64_t uncompressed_size;
    std::uint64_t compressed_size;
    std::uint64_t local_header_offset;
};

// Replaces the 32-bit fields saturated at 0xffffffff with the zip64 extra field's values, which
// appear in this fixed order and only for the saturated fields.
Zip64Values apply_zip64_extra(Zip64Values values, std::span<const std::byte> extra,
                              const std::string& source, const std::string& name) {
    std::uint64_t pos = 0;
    while (pos + 4 <= extra.size()) {
        const auto id = read_le(extra, pos, 2);
        const auto size = read_le(extra, pos + 2, 2);
        const auto field = checked_slice(extra, pos + 4, size, source,
                                         fmt::format("an extra field of entry '{}'", name));
        pos += 4 + size;
        if (id != kZip64ExtraId) continue;
        std::uint64_t field_pos = 0;
        for (std::uint64_t* value :
             {&values.uncompressed_size, &values.compressed_size, &values.local_header_offset}) {
            if (*value != 0xffffffff) continue;
            if (field_pos + 8 > field.size()) {
                fail(ErrorCode::kCorruptData,
                     "{}: damaged zip archive: the zip64 extra field of entry '{}' is too short",
                     source, name);
            }
            *value = read_le(field, field_pos, 8);
            field_pos += 8;
        }
    }
    return values;
}

}  // namespace

bool looks_like_zip(std::span<const std::byte> bytes) {
    return bytes.size() >= 4 && read_le(bytes, 0, 4) == kLocalHeaderSignature;
}

ZipArchive ZipArchive::parse(std::span<const std::byte> archive, const std::string& source) {
    const CentralDirectory dir = read_central_directory_location(archive, source);
    const auto directory =
        checked_slice(archive, dir.offset, dir.size, source, "the central directory");
    if (dir.entry_count > directory.size() / kCentralHeaderSize) {
        fail(ErrorCode::kCorruptData,
             "{}: damaged zip archive: {} entries cannot fit in a {}-byte central directory",
             source, dir.entry_count, directory.size());
    }

    ZipArchive result;
    result.entries_.reserve(dir.entry_count);
    std::uint64_t pos = 0;
    for (std::uint64_t index = 0; index < dir.entry_count; ++index) {
        const auto header = checked_slice(directory, pos, kCentralHeaderSize, source,
                                          fmt::format("central-directory entry {}", index));
        if (read_le(header, 0, 4) != kCentralHeaderSignature) {
            fail(ErrorCode::kCorruptData,
                 "{}: damaged zip archive: bad signature for central-directory entry {}", source,
                 index);
        }
        const auto flags = read_le(header, 8, 2);
        const auto method = read_le(header, 10, 2);
        const auto name_size = read_le(header, 28, 2);
        const auto extra_size = read_le(header, 30, 2);
        const auto comment_size = read_le(header, 32, 2);
        const auto variable = checked_slice(directory, pos + kCentralHeaderSize,
                                            name_size + extra_size + comment_size, source,
                                            fmt::format("central-directory entry {}", index));
        pos += kCentralHeaderSize + variable.size();

        std::string name(reinterpret_cast<const char*>(variable.data()), name_size);
        if ((flags & 1) != 0) {
            fail(ErrorCode::kUnsupported, "{}: zip entry '{}' is encrypted", source, name);
        }
        if (method != 0) {
            fail(ErrorCode::kUnsupported,
                 "{}: zip entry '{}' is compressed (method {}); only stored entries are "
                 "supported, as torch.save writes them",
                 source, name, method);
        }
        const Zip64Values sizes = apply_zip64_extra(
            {read_le(header, 24, 4), read_le(header, 20, 4), read_le(header, 42, 4)},
            variable.subspan(name_size, extra_size), source, name);
        if (sizes.compressed_size != sizes.uncompressed_size) {
            fail(ErrorCode::kCorruptData,
                 "{}: damaged zip archive: stored entry '{}' claims {} bytes compressed but {} "
                 "uncompressed",
                 source, name, sizes.compressed_size, sizes.uncompressed_size);
        }

        const auto local = checked_slice(archive, sizes.local_header_offset, kLocalHeaderSize,
                                         source, fmt::format("the local header of '{}'", name));
        const auto local_name_size = read_le(local, 26, 2);
        const auto local_extra_size = read_le(local, 28, 2);
        const auto local_name =
            checked_slice(archive, sizes.local_header_offset + kLocalHeaderSize, local_name_size,
                          source, fmt::format("the local header of '{}'", name));
        if (read_le(local, 0, 4) != kLocalHeaderSignature || local_name_size != name_size ||
            std::memcmp(local_name.data(), name.data(), name_size) != 0) {
            fail(ErrorCode::kCorruptData,
                 "{}: damaged zip archive: the local header of '{}' does not match the central "
                 "directory",
                 source, name);
        }
        const auto data = checked_slice(
            archive,
            sizes.local_header_offset + kLocalHeaderSize + local_name_size + local_extra_size,
            sizes.compressed_size, source, fmt::format("the data of '{}'", name));
        if (!result.index_.emplace(name, result.entries_.size()).second) {
            fail(ErrorCode::kCorruptData, "{}: damaged zip archive: entry '{}' appears twice",
                 source, name);
        }
        result.entries_.push_back(
            {std::move(name), data, static_cast<std::uint32_t>(read_le(header, 16, 4))});
    }
    return result;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
}

}  // namespace llmserve::io
