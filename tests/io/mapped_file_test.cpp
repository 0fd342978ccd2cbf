#include "io/mapped_file.h"

#include "test_support.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace llmserve::io {
namespace {

using testing::expect_error;
using testing::ScratchDir;

TEST(MappedFile, MapsTheWholeFile) {
    ScratchDir scratch;
    const auto path = scratch.path() / "data.bin";
    const auto written = testing::make_safetensors("{}", 5000);
    testing::write_bytes(path, written);

    const MappedFile file = MappedFile::open(path);
    EXPECT_EQ(file.path(), path);
    ASSERT_EQ(file.bytes().size(), written.size());
    EXPECT_TRUE(std::equal(written.begin(), written.end(), file.bytes().begin()));
}

TEST(MappedFile, MovingKeepsTheMappingAndEmptiesTheSource) {
    ScratchDir scratch;
    const auto path = scratch.path() / "data.bin";
    testing::write_text(path, "abcdef");

    MappedFile original = MappedFile::open(path);
    const std::byte* data = original.bytes().data();
    MappedFile moved = std::move(original);
    EXPECT_EQ(moved.bytes().data(), data);
    EXPECT_EQ(moved.bytes().size(), 6u);
    EXPECT_TRUE(original.bytes().empty());  // NOLINT(bugprone-use-after-move): defined state

    MappedFile assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.bytes().data(), data);
    EXPECT_EQ(static_cast<char>(assigned.bytes()[5]), 'f');
    EXPECT_TRUE(moved.bytes().empty());  // NOLINT(bugprone-use-after-move)
}

TEST(MappedFile, EmptyFileGivesEmptyBytes) {
    ScratchDir scratch;
    const auto path = scratch.path() / "empty.bin";
    testing::write_text(path, "");
    EXPECT_TRUE(MappedFile::open(path).bytes().empty());
}

TEST(MappedFile, MissingFileIsNotFoundAndNamesThePath) {
    ScratchDir scratch;
    const auto path = scratch.path() / "absent.safetensors";
    expect_error([&] { MappedFile::open(path); }, ErrorCode::kNotFound,
                 {path.string(), "No such file"});
}

TEST(MappedFile, DirectoryIsRejected) {
    ScratchDir scratch;
    expect_error([&] { MappedFile::open(scratch.path()); }, ErrorCode::kInvalidArgument,
                 {scratch.path().string(), "not a regular file"});
}

}  // namespace
}  // namespace llmserve::io
