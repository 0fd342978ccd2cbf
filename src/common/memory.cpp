#include "common/memory.h"

#include <cstdlib>  // defines __GLIBC__ on glibc
#include <string_view>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llmserve {

void release_free_heap_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

void cap_malloc_arenas() {
#if defined(__GLIBC__)
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    const bool operator_chose =
        std::getenv("MALLOC_ARENA_MAX") != nullptr ||
        (tunables != nullptr &&
         std::string_view(tunables).find("glibc.malloc.arena_max") != std::string_view::npos);
    if (!operator_chose) mallopt(M_ARENA_MAX, kServerMallocArenas);
#endif
}

}  // namespace llmserve
