// Model-level loading errors: a config that disagrees with the weights must fail with a message
// naming the directory, file and tensor, never load a silently wrong model.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <fstream>
#include <functional>

#include "backend/backend.h"
#include "common/error.h"
#include "model/model.h"
#include "tests/common/test_paths.h"

namespace llmserve {
namespace {

namespace fs = std::filesystem;

// A copy of the first fixture model folder whose config.json is edited by `edit`.
class DamagedModel : public ::testing::Test {
  protected:
    void SetUp() override {
        const auto folders = testing::subdirectories(testing::fixtures_dir() / "models");
        ASSERT_FALSE(folders.empty());
        source_ = folders.front();
        dir_ = fs::temp_directory_path() /
               ("llmserve-model-test-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::copy(source_, dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    void edit_config(const std::function<void(nlohmann::json&)>& edit) {
        auto config = nlohmann::json::parse(testing::read_text(dir_ / "config.json"));
        edit(config);
        fs::remove(dir_ / "config.json");
        std::ofstream(dir_ / "config.json") << config.dump();
    }

    Error load_error() {
        try {
            model::Model::load(dir_, {backend::make_cpu_backend(1), backend::WeightFormat::kAuto});
        } catch (const Error& e) {
            return e;
        }
        ADD_FAILURE() << "loading " << dir_ << " succeeded";
        return Error(ErrorCode::kInternal, "");
    }

    fs::path source_, dir_;
};

TEST_F(DamagedModel, MoreLayersThanWeightsNamesTheMissingTensor) {
    int layers = 0;
    edit_config([&](nlohmann::json& c) {
        layers = c["n_layer"].get<int>();
        c["n_layer"] = layers + 1;
    });
    const Error e = load_error();
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("h." + std::to_string(layers) + "."), std::string::npos)
        << e.what();
}

TEST_F(DamagedModel, WrongWidthNamesTensorAndShapes) {
    edit_config([](nlohmann::json& c) { c["n_embd"] = c["n_embd"].get<int>() * 2; });
    const Error e = load_error();
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
    EXPECT_NE(std::string(e.what()).find("wte.weight"), std::string::npos) << e.what();
}

TEST_F(DamagedModel, UntiedHeadWithoutLmHeadIsMissing) {
    edit_config([](nlohmann::json& c) { c["tie_word_embeddings"] = false; });
    const Error e = load_error();
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos) << e.what();
}

TEST_F(DamagedModel, NoWeightsAtAll) {
    for (const auto& entry : fs::directory_iterator(dir_))
        if (entry.path().extension() == ".safetensors" || entry.path().extension() == ".json")
            if (entry.path().filename() != "config.json") fs::remove(entry.path());
    const Error e = load_error();
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find("pytorch_model.bin"), std::string::npos) << e.what();
}

TEST(ModelLoad, TokenOutsideVocabularyIsRejectedByForward) {
    const auto dir = testing::subdirectories(testing::fixtures_dir() / "models").front();
    auto model =
        model::Model::load(dir, {backend::make_cpu_backend(1), backend::WeightFormat::kAuto});
    auto kv =
        model->backend().allocate_kv(model->config().n_layer, 1, 16, model->config().kv_dim());
    model::Workspace ws(model->backend(), model->config(), 1, 1);
    std::vector<int> table{0};
    model::Batch batch;
    batch.tokens = {model->config().vocab_size};
    batch.positions = {0};
    batch.row_sequence = {0};
    batch.block_tables.emplace_back(table);
    batch.logits_rows = {0};
    std::vector<float> logits(model->config().vocab_size);
    try {
        model->forward(batch, *kv, ws, logits);
        FAIL() << "forward accepted a token outside the vocabulary";
    } catch (const Error& e) {
        EXPECT_EQ(e.param(), "prompt");
        EXPECT_NE(std::string(e.what()).find(std::to_string(model->config().vocab_size)),
                  std::string::npos);
    }
}

}  // namespace
}  // namespace llmserve
