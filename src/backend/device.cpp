#include "backend/device.h"

#include <dlfcn.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "backend/cuda_module.h"
#include "common/error.h"

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

// LLMSERVE_CUDA_MODULE when set, else libllmserve_cuda.so beside the running binary.
std::filesystem::path cuda_module_path() {
    if (const char* path = std::getenv("LLMSERVE_CUDA_MODULE"); path && *path) return path;
    std::error_code error;
    const auto binary = std::filesystem::read_symlink("/proc/self/exe", error);
    return (error ? std::filesystem::path(".") : binary.parent_path()) / kCudaModuleFileName;
}

struct LoadedCudaModule {
    const CudaModule* module = nullptr;
    std::string why_not;  // when module is null: what failed, naming the file
};

LoadedCudaModule open_cuda_module() {
    const std::filesystem::path path = cuda_module_path();
    // Never closed: the backends it makes live until the process ends.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        return {nullptr, fmt::format("the CUDA module could not be loaded: {}", dlerror())};
    using EntryPoint = const CudaModule* (*)();
    auto entry = reinterpret_cast<EntryPoint>(dlsym(handle, kCudaModuleEntryPoint));
    if (!entry)
        return {nullptr, fmt::format("{} is not an llmserve CUDA module (no {} symbol)",
                                     path.string(), kCudaModuleEntryPoint)};
    const CudaModule* module = entry();
    const CudaModuleStamp ours = CudaModuleStamp::of_this_build(LLMSERVE_VERSION);
    const CudaModuleStamp& theirs = module->stamp;
    if (std::strcmp(ours.version, theirs.version) != 0 ||
        ours.backend_size != theirs.backend_size || ours.options_size != theirs.options_size ||
        ours.devices_size != theirs.devices_size)
        return {
            nullptr,
            fmt::format("{} comes from another build (llmserve {}, this binary is {}); install the "
                        "module built with this binary",
                        path.string(), theirs.version, ours.version)};
    return {module, {}};
}

// Every machine with an NVIDIA GPU has the driver's libcuda.so.1; without it no device can be
// visible, and opening the module (which maps the CUDA runtime and cuBLAS: about 150 MB resident)
// is not worth it just to find that out.
std::optional<std::string> missing_cuda_driver() {
    if (dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL))
        return std::nullopt;  // kept open: the runtime uses it
    return dlerror();
}

const LoadedCudaModule& cuda_module() {
    static const LoadedCudaModule loaded = open_cuda_module();
    return loaded;
}

}  // namespace

bool cuda_compiled() {
    return LLMSERVE_WITH_CUDA != 0;
}

DeviceChoice select_device(std::string_view device, const DeviceOptions& options) {
    const int threads = options.threads;
    if (device == "cpu") return cpu_choice(threads, "DEVICE=cpu");
    const std::optional<int> cuda_index = parse_cuda_index(device);
    if (device != "auto" && !cuda_index)
        fail_param("device", "device must be auto, cpu, cuda or cuda:N; got '{}'", device);
    if (!cuda_compiled()) {
        if (device == "auto")
            return cpu_choice(threads,
                              "DEVICE=auto: this binary was built without CUDA, using the CPU");
        fail(ErrorCode::kUnavailable,
             "DEVICE={}: this binary was built without the CUDA backend (configure with nvcc "
             "available, or -DLLMSERVE_CUDA=ON)",
             device);
    }
    if (device == "auto") {
        if (const auto why = missing_cuda_driver())
            return cpu_choice(threads,
                              fmt::format("DEVICE=auto: no CUDA driver ({}), using the CPU", *why));
    }
    const LoadedCudaModule& loaded = cuda_module();
    if (!loaded.module) {
        if (device == "auto")
            return cpu_choice(threads,
                              fmt::format("DEVICE=auto: {}, using the CPU", loaded.why_not));
        fail(ErrorCode::kUnavailable, "DEVICE={}: {}", device, loaded.why_not);
    }
    const CudaModule& cuda = *loaded.module;
    const CudaOptions cuda_options{.graphs = options.cuda_graphs};
    const CudaDevices devices = cuda.probe_devices();
    if (device == "auto") {
        if (devices.count == 0)
            return cpu_choice(threads, fmt::format("DEVICE=auto: no CUDA device visible ({}), "
                                                   "using the CPU",
                                                   devices.detail));
        try {
            return {cuda.make_backend(0, cuda_options),
                    fmt::format("DEVICE=auto: using cuda:0 ({}), CUDA graphs {}",
                                cuda.describe_device(0), options.cuda_graphs ? "on" : "off")};
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
    return {cuda.make_backend(*cuda_index, cuda_options),
            fmt::format("DEVICE={}: using cuda:{} ({}), CUDA graphs {}", device, *cuda_index,
                        cuda.describe_device(*cuda_index), options.cuda_graphs ? "on" : "off")};
}

}  // namespace llmserve::backend
