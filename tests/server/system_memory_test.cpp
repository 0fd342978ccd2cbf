#include "server/system_memory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace llmserve::server {
namespace {

namespace fs = std::filesystem;

TEST(SystemMemoryTest, ProcessAndSystemFiguresAreReadable) {
    const auto resident = resident_memory_bytes();
    const auto available = available_memory_bytes();
    ASSERT_TRUE(resident);
    ASSERT_TRUE(available);
    EXPECT_GT(*resident, 0u);
    EXPECT_GT(*available, 0u);
}

TEST(SystemMemoryTest, EstimateScalesWeightFilesFromStoredToComputedWidth) {
    using backend::WeightFormat;
    const fs::path dir =
        fs::temp_directory_path() / ("llmserve_memory_estimate_test_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "model-00001-of-00002.safetensors") << std::string(1000, 'x');
    std::ofstream(dir / "model-00002-of-00002.safetensors") << std::string(600, 'x');
    std::ofstream(dir / "tokenizer.json") << std::string(5000, 'x');  // not weights
    std::ofstream(dir / "config.json") << R"({"torch_dtype": "float32"})";
    EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kAuto), 1600u);
    EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kF32), 1600u);
    EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kF16), 800u);
    EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kBF16), 800u);
    EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kQ8), 425u);  // 1600 / 128 * 34
    EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kQ4), 225u);  // 1600 / 128 * 18
    for (const char* config : {R"({"torch_dtype": "float16"})", R"({"dtype": "bfloat16"})"}) {
        std::ofstream(dir / "config.json") << config;
        EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kAuto), 1600u) << config;
        EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kF32), 3200u) << config;
        EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kQ8), 850u) << config;
    }

    fs::remove(dir / "model-00001-of-00002.safetensors");
    fs::remove(dir / "model-00002-of-00002.safetensors");
    std::ofstream(dir / "pytorch_model.bin") << std::string(700, 'x');
    std::ofstream(dir / "config.json") << "{}";
    EXPECT_EQ(estimate_model_memory_bytes(dir, WeightFormat::kAuto), 700u);

    fs::remove(dir / "pytorch_model.bin");
    try {
        estimate_model_memory_bytes(dir, WeightFormat::kAuto);
        ADD_FAILURE();
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kNotFound);
        EXPECT_NE(std::string(error.what()).find(dir.string()), std::string::npos);
    }
    fs::remove_all(dir);
}

TEST(SystemMemoryTest, RefusalNamesBothFigures) {
    EXPECT_NO_THROW(check_model_fits("m", 100, 100));
    try {
        check_model_fits("some/model", 3ull << 30, 1ull << 30);
        ADD_FAILURE();
    } catch (const Error& error) {
        EXPECT_EQ(error.code(), ErrorCode::kResourceExhausted);
        const std::string message = error.what();
        EXPECT_NE(message.find("some/model"), std::string::npos) << message;
        EXPECT_NE(message.find("3072.0 MiB"), std::string::npos) << message;
        EXPECT_NE(message.find("1024.0 MiB"), std::string::npos) << message;
    }
}

}  // namespace
}  // namespace llmserve::server
