// Helpers shared by the io tests: fixture discovery, scratch directories, synthetic files and
// checks on thrown errors.
#pragma once

#include "common/error.h"
#include "tests/common/scratch_dir.h"
#include "tests/common/test_paths.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmserve::io::testing {

using llmserve::testing::fixtures_dir;
using llmserve::testing::ScratchDir;

// Every folder under <fixtures>/models, sorted by name.
std::vector<std::filesystem::path> model_dirs();

std::vector<std::byte> read_bytes(const std::filesystem::path& path);
std::string read_text(const std::filesystem::path& path);
void write_bytes(const std::filesystem::path& path, std::span<const std::byte> bytes);
void write_text(const std::filesystem::path& path, std::string_view text);

// A safetensors file: the header length, `header_json` verbatim, then `data_bytes` bytes
// counting 0, 1, 2, ... (mod 256) so that views can be checked against their offsets.
std::vector<std::byte> make_safetensors(std::string_view header_json, std::size_t data_bytes);

// Runs `action`, which must throw llmserve::Error; returns it (a default kInternal error with an
// empty message and a test failure when nothing or something else is thrown).
Error capture_error(const std::function<void()>& action);

// Asserts the error's code and that its message contains every one of `fragments`.
void expect_error(const std::function<void()>& action, ErrorCode code,
                  const std::vector<std::string>& fragments);

}  // namespace llmserve::io::testing
