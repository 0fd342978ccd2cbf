#include "server/process_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "server/system_memory.h"

namespace llmserve::server {
namespace {

// The fields of /proc/self/stat after the command name, which may itself hold spaces and
// parentheses (hence the last ')'): element 0 is field 3 ("state") of proc(5).
std::vector<std::string> stat_fields_after_name() {
    std::ifstream in("/proc/self/stat");
    std::string line;
    if (!std::getline(in, line)) return {};
    const std::size_t name_end = line.rfind(')');
    if (name_end == std::string::npos) return {};
    std::istringstream rest(line.substr(name_end + 1));
    std::vector<std::string> fields;
    for (std::string field; rest >> field;) fields.push_back(field);
    return fields;
}

// Field `number` (1-based, as proc(5) counts) of /proc/self/stat.
std::optional<double> stat_field(const std::vector<std::string>& fields, std::size_t number) {
    constexpr std::size_t kFirstField = 3;
    if (number < kFirstField || number - kFirstField >= fields.size()) return std::nullopt;
    try {
        return std::stod(fields[number - kFirstField]);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// The system's boot time in seconds since the epoch (/proc/stat "btime").
std::optional<double> boot_time_seconds() {
    std::ifstream in("/proc/stat");
    std::string key;
    while (in >> key) {
        if (key == "btime") {
            double seconds = 0;
            if (in >> seconds) return seconds;
            return std::nullopt;
        }
        in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return std::nullopt;
}

std::optional<std::uint64_t> count_open_fds() {
    std::error_code error;
    std::uint64_t count = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", error), end; !error && it != end;
         it.increment(error)) {
        ++count;
    }
    if (error) return std::nullopt;
    return count;
}

}  // namespace

ProcessStats read_process_stats() {
    ProcessStats stats;
    const std::vector<std::string> fields = stat_fields_after_name();
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    if (ticks_per_second > 0) {
        const auto user = stat_field(fields, 14);    // utime
        const auto system = stat_field(fields, 15);  // stime
        if (user && system) stats.cpu_seconds = (*user + *system) / ticks_per_second;
        const auto started = stat_field(fields, 22);  // starttime: ticks after boot
        const auto boot = boot_time_seconds();
        if (started && boot) stats.start_time_seconds = *boot + *started / ticks_per_second;
    }
    if (const auto bytes = stat_field(fields, 23)) {  // vsize
        stats.virtual_memory_bytes = static_cast<std::uint64_t>(*bytes);
    }
    stats.resident_memory_bytes = resident_memory_bytes();
    stats.open_fds = count_open_fds();
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
        stats.max_fds = limit.rlim_cur;
    }
    return stats;
}

}  // namespace llmserve::server
