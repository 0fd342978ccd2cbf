#include "common/memory.h"

#include <cstdlib>  // defines __GLIBC__ on glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llmserve {

void release_free_heap_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

}  // namespace llmserve
