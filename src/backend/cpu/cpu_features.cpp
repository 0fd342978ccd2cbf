#include "backend/cpu/cpu_features.h"

#include <cstdint>
#include <cstdlib>

#include "common/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LLMSERVE_X86 1
#endif

namespace llmserve::backend::cpu {
namespace {

struct Features {
    bool avx2 = false;    // with FMA and F16C, and the OS saving ymm state
    bool avx512 = false;  // F, BW, DQ, VL, VNNI, and the OS saving zmm and mask state
};

#ifdef LLMSERVE_X86
std::uint64_t read_xcr0() {
    std::uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<std::uint64_t>(edx) << 32) | eax;
}

Features detect() {
    Features f;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return f;
    const bool osxsave = (ecx >> 27) & 1;
    const bool fma = (ecx >> 12) & 1;
    const bool f16c = (ecx >> 29) & 1;
    const bool avx = (ecx >> 28) & 1;
    if (!osxsave || !avx) return f;
    const std::uint64_t xcr0 = read_xcr0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6;    // SSE and AVX registers
    const bool zmm_state = (xcr0 & 0xe6) == 0xe6;  // plus opmask, ZMM_Hi256, Hi16_ZMM
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return f;
    const bool avx2 = (ebx >> 5) & 1;
    const bool avx512f = (ebx >> 16) & 1, avx512dq = (ebx >> 17) & 1;
    const bool avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1;
    const bool vnni = (ecx >> 11) & 1;
    f.avx2 = ymm_state && avx2 && fma && f16c;
    f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && vnni;
    return f;
}
#else
Features detect() {
    return {};
}
#endif

const Features& features() {
    static const Features detected = detect();
    return detected;
}

}  // namespace

std::string_view to_string(Isa isa) {
    switch (isa) {
        case Isa::kScalar:
            return "scalar";
        case Isa::kAvx2:
            return "avx2";
        case Isa::kAvx512:
            return "avx512";
    }
    return "?";
}

Isa parse_isa(std::string_view text, std::string_view source) {
    if (text == "scalar") return Isa::kScalar;
    if (text == "avx2") return Isa::kAvx2;
    if (text == "avx512") return Isa::kAvx512;
    fail(ErrorCode::kInvalidArgument,
         "{}: unknown CPU instruction set '{}'; expected scalar, avx2 or avx512", source, text);
}

bool isa_supported(Isa isa) {
    switch (isa) {
        case Isa::kScalar:
            return true;
        case Isa::kAvx2:
            return features().avx2;
        case Isa::kAvx512:
            return features().avx512;
    }
    return false;
}

Isa best_isa() {
    if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
    if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
    return Isa::kScalar;
}

std::vector<Isa> supported_isas() {
    std::vector<Isa> out;
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
        if (isa_supported(isa)) out.push_back(isa);
    return out;
}

Isa default_isa() {
    const char* forced = std::getenv("LLMSERVE_CPU_ISA");
    if (forced == nullptr || *forced == '\0') return best_isa();
    const Isa isa = parse_isa(forced, "LLMSERVE_CPU_ISA");
    if (!isa_supported(isa))
        fail(ErrorCode::kUnsupported,
             "LLMSERVE_CPU_ISA={}: this CPU does not support it (best available: {})", forced,
             to_string(best_isa()));
    return isa;
}

}  // namespace llmserve::backend::cpu
