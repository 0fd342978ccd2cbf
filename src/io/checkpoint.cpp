#include "io/checkpoint.h"

#include "common/error.h"
#include "io/pytorch_checkpoint.h"

namespace llmserve::io {

WeightStore open_checkpoint_directory(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    if (fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json"))
        return WeightStore::open_directory(dir);
    if (fs::exists(dir / kPytorchWeightsName) || fs::exists(dir / kPytorchIndexName))
        return open_pytorch_directory(dir);
    if (!fs::is_directory(dir))
        fail(ErrorCode::kNotFound, "model directory '{}' does not exist", dir.string());
    fail(ErrorCode::kNotFound,
         "{}: no weights found (looked for model.safetensors, model.safetensors.index.json, {} and "
         "{})",
         dir.string(), kPytorchWeightsName, kPytorchIndexName);
}

}  // namespace llmserve::io
