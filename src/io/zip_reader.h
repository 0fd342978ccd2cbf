// A read-only view of a zip archive whose entries are stored uncompressed, as torch.save writes
// them. Only the central directory is trusted for sizes (torch sets the data-descriptor flag, so
// local headers carry zeros); every offset and size is checked against the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::io {

struct ZipEntry {
    std::string name;
    std::span<const std::byte> data;  // the stored bytes, inside the archive buffer
    std::uint32_t crc32 = 0;          // as the central directory records it (not checked here)
};

class ZipArchive {
  public:
    // Reads the end-of-central-directory record (zip64 included) and every central-directory
    // entry. Errors name `source` and the entry at fault: kCorruptData for anything malformed or
    // pointing outside `archive` (duplicate names included); kUnsupported for compressed or
    // encrypted entries and multi-disk archives. The archive must outlive the returned object.
    static ZipArchive parse(std::span<const std::byte> archive, const std::string& source);

    const std::vector<ZipEntry>& entries() const { return entries_; }
    // nullptr when no entry has exactly this name.
    const ZipEntry* find(std::string_view name) const;

  private:
    std::vector<ZipEntry> entries_;                          // in central-directory order
    std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in entries_
};

// True when `bytes` starts with a zip local-file-header signature ("PK\3\4").
bool looks_like_zip(std::span<const std::byte> bytes);

}  // namespace llmserve::io
