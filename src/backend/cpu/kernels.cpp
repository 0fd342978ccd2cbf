#include "backend/cpu/kernels.h"

#include <vector>

#include "common/error.h"

namespace llmserve::backend::cpu {

const KernelTable& kernel_table(Isa isa) {
    if (!isa_supported(isa))
        fail(ErrorCode::kUnsupported, "this CPU does not support the {} kernels (best: {})",
             to_string(isa), to_string(best_isa()));
    switch (isa) {
#ifdef LLMSERVE_X86_KERNELS
        case Isa::kAvx512:
            return avx512_kernels();
        case Isa::kAvx2:
            return avx2_kernels();
#endif
        default:
            return scalar_kernels();
    }
}

float* attention_scratch(std::size_t count) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < count) scratch.resize(count);
    return scratch.data();
}

}  // namespace llmserve::backend::cpu
