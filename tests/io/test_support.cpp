#include "test_support.h"

#include <algorithm>
#include <cstdint>
#include <fstream>

namespace llmserve::io::testing {

namespace fs = std::filesystem;

std::vector<fs::path> model_dirs() {
    std::vector<fs::path> dirs;
    for (const auto& entry : fs::directory_iterator(fixtures_dir() / "models")) {
        if (entry.is_directory()) dirs.push_back(entry.path());
    }
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

std::vector<std::byte> read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> bytes(chars.size());
    std::transform(chars.begin(), chars.end(), bytes.begin(),
                   [](char c) { return static_cast<std::byte>(c); });
    return bytes;
}

std::string read_text(const fs::path& path) {
    const auto bytes = read_bytes(path);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void write_bytes(const fs::path& path, std::span<const std::byte> bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

void write_text(const fs::path& path, std::string_view text) {
    write_bytes(path, std::as_bytes(std::span(text.data(), text.size())));
}

std::vector<std::byte> make_safetensors(std::string_view header_json, std::size_t data_bytes) {
    std::vector<std::byte> file;
    const std::uint64_t length = header_json.size();
    for (int i = 0; i < 8; ++i) file.push_back(static_cast<std::byte>(length >> (8 * i)));
    for (const char c : header_json) file.push_back(static_cast<std::byte>(c));
    for (std::size_t i = 0; i < data_bytes; ++i) file.push_back(static_cast<std::byte>(i));
    return file;
}

Error capture_error(const std::function<void()>& action) {
    try {
        action();
    } catch (const Error& error) {
        return error;
    } catch (const std::exception& other) {
        ADD_FAILURE() << "expected llmserve::Error, got another exception: " << other.what();
        return Error(ErrorCode::kInternal, "");
    }
    ADD_FAILURE() << "expected llmserve::Error, nothing was thrown";
    return Error(ErrorCode::kInternal, "");
}

void expect_error(const std::function<void()>& action, ErrorCode code,
                  const std::vector<std::string>& fragments) {
    const Error error = capture_error(action);
    EXPECT_EQ(error.code(), code) << "message: " << error.what();
    const std::string_view message = error.what();
    for (const auto& fragment : fragments) {
        EXPECT_NE(message.find(fragment), std::string_view::npos)
            << "message \"" << message << "\" does not mention \"" << fragment << "\"";
    }
}

}  // namespace llmserve::io::testing
