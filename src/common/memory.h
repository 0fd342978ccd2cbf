// Process memory housekeeping.
#pragma once

namespace llmserve {

// Returns freed heap pages to the operating system. Loading a model parses JSON and converts
// tensors through short-lived buffers; glibc keeps what they freed resident (about 12 MB after
// GPT-2's tokenizer.json), which a long-running server would otherwise carry for its lifetime.
// A no-op where the C library offers no way to do it.
void release_free_heap_memory();

// The most glibc malloc arenas a server keeps, unless MALLOC_ARENA_MAX (glibc's own variable)
// says otherwise. glibc's default, 8 per core, gives each thread that meets contention an arena
// of its own, and each arena keeps the peak of what its threads once held (issue 17: 348 MiB
// became 810 MiB after heavy requests and stayed). The server allocates on its request and engine
// threads, not in the compute kernels, so two arenas see little contention; one would serialize
// the request threads' JSON work with the engine's.
inline constexpr int kServerMallocArenas = 2;

// Caps the malloc arenas at kServerMallocArenas unless the environment sets MALLOC_ARENA_MAX
// (or glibc.malloc.arena_max in GLIBC_TUNABLES). Call before starting threads. A no-op where the
// C library is not glibc.
void cap_malloc_arenas();

}  // namespace llmserve
