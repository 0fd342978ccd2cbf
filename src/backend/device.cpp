#include "backend/device.h"

#include <charconv>
#include <optional>

#include "common/error.h"

#if LLMSERVE_WITH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace llmserve::backend {
namespace {

// "cuda" -> 0, "cuda:N" -> N; nullopt for anything else.
std::optional<int> parse_cuda_index(std::string_view device) {
    if (device == "cuda") return 0;
    constexpr std::string_view kPrefix = "cuda:";
    if (!device.starts_with(kPrefix)) return std::nullopt;
    const std::string_view digits = device.substr(kPrefix.size());
    int index = -1;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() || index < 0)
        return std::nullopt;
    return index;
}

DeviceChoice cpu_choice(int threads, std::string reason) {
    return {make_cpu_backend(threads), std::move(reason)};
}

}  // namespace

bool cuda_compiled() {
#if LLMSERVE_WITH_CUDA
    return true;
#else
    return false;
#endif
}

DeviceChoice select_device(std::string_view device, const DeviceOptions& options) {
    const int threads = options.threads;
    if (device == "cpu") return cpu_choice(threads, "DEVICE=cpu");
    const std::optional<int> cuda_index = parse_cuda_index(device);
    if (device != "auto" && !cuda_index)
        fail_param("device", "device must be auto, cpu, cuda or cuda:N; got '{}'", device);
#if LLMSERVE_WITH_CUDA
    const CudaDevices devices = probe_cuda_devices();
    if (device == "auto") {
        if (devices.count == 0)
            return cpu_choice(threads, fmt::format("DEVICE=auto: no CUDA device visible ({}), "
                                                   "using the CPU",
                                                   devices.detail));
        try {
            return {make_cuda_backend(0, {.graphs = options.cuda_graphs}),
                    fmt::format("DEVICE=auto: using cuda:0 ({}), CUDA graphs {}",
                                describe_cuda_device(0), options.cuda_graphs ? "on" : "off")};
        } catch (const Error& error) {
            return cpu_choice(threads, fmt::format("DEVICE=auto: cuda:0 could not be used ({}), "
                                                   "using the CPU",
                                                   error.what()));
        }
    }
    if (devices.count == 0)
        fail(ErrorCode::kUnavailable, "DEVICE={}: no CUDA device visible ({})", device,
             devices.detail);
    if (*cuda_index >= devices.count)
        fail(ErrorCode::kUnavailable,
             "DEVICE={}: only {} CUDA device(s) visible (cuda:0 to cuda:{})", device, devices.count,
             devices.count - 1);
    return {make_cuda_backend(*cuda_index, {.graphs = options.cuda_graphs}),
            fmt::format("DEVICE={}: using cuda:{} ({}), CUDA graphs {}", device, *cuda_index,
                        describe_cuda_device(*cuda_index), options.cuda_graphs ? "on" : "off")};
#else
    if (device == "auto")
        return cpu_choice(threads,
                          "DEVICE=auto: this binary was built without CUDA, using the CPU");
    fail(ErrorCode::kUnavailable,
         "DEVICE={}: this binary was built without the CUDA backend (configure with nvcc "
         "available, or -DLLMSERVE_CUDA=ON)",
         device);
#endif
}

}  // namespace llmserve::backend
