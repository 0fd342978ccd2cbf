// A scratch directory for tests that write files: unique per instance, gone with its contents when
// the instance is.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace llmserve::testing {

// A fresh, empty directory under the system temp dir (mkdtemp: unique even across processes),
// removed with everything in it on destruction; throws std::runtime_error when it cannot be made.
class ScratchDir {
  public:
    ScratchDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "llmserve-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("cannot create a scratch directory " + pattern);
        path_ = pattern;
    }
    ~ScratchDir() {
        std::error_code ignored;  // a failed clean-up must not turn into a crash
        std::filesystem::remove_all(path_, ignored);
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    const std::filesystem::path& path() const { return path_; }

    // Writes `content` to the file `name` inside the directory and returns its path.
    std::filesystem::path write(const std::string& name, std::string_view content) const {
        const std::filesystem::path file = path_ / name;
        std::ofstream(file, std::ios::binary) << content;
        return file;
    }

  private:
    std::filesystem::path path_;
};

}  // namespace llmserve::testing
