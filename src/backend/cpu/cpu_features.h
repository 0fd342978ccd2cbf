// Which vector instruction set the CPU kernels use. Detected once from cpuid; LLMSERVE_CPU_ISA
// (scalar | avx2 | avx512) forces a lower tier, e.g. to test the portable fallback on a big CPU.
#pragma once

#include <string_view>
#include <vector>

namespace llmserve::backend::cpu {

// Kernel tiers, each a superset of the one before:
//   kScalar: portable C++, any CPU.
//   kAvx2:   AVX2 + FMA + F16C (Haswell, Zen 1 and later).
//   kAvx512: AVX-512 F/BW/DQ/VL + VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later).
enum class Isa { kScalar, kAvx2, kAvx512 };

std::string_view to_string(Isa isa);
// "scalar", "avx2", "avx512"; kInvalidArgument naming `source` otherwise.
Isa parse_isa(std::string_view text, std::string_view source);

bool isa_supported(Isa isa);        // by this CPU and operating system
Isa best_isa();                     // the highest supported tier
std::vector<Isa> supported_isas();  // every supported tier, lowest first

// The tier new backends use: $LLMSERVE_CPU_ISA when set (kInvalidArgument when unknown,
// kUnsupported when this CPU lacks it), else best_isa().
Isa default_isa();

}  // namespace llmserve::backend::cpu
