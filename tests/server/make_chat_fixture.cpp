// Writes the chat test model (chat_fixture.h) to the directory given, for the JavaScript tests
// (the openai client's chat.completions): one definition of the fixture for every language.
#include <iostream>

#include "tests/server/chat_fixture.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_chat_fixture DIR\n";
        return 2;
    }
    if (!llmserve::server::testing::make_chat_model_dir(argv[1])) {
        std::cerr << "no llama folder under the fixtures' models-llama\n";
        return 1;
    }
    return 0;
}
