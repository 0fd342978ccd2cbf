// Process memory housekeeping.
#pragma once

namespace llmserve {

// Returns freed heap pages to the operating system. Loading a model parses JSON and converts
// tensors through short-lived buffers; glibc keeps what they freed resident (about 12 MB after
// GPT-2's tokenizer.json), which a long-running server would otherwise carry for its lifetime.
// A no-op where the C library offers no way to do it.
void release_free_heap_memory();

}  // namespace llmserve
