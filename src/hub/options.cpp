// HubOptions::from_environment and ModelRef parsing.
#include "common/error.h"
#include "hub/hub.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>

namespace llmserve::hub {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxRepoPartLength = 96;
constexpr std::size_t kMaxRevisionLength = 256;

std::optional<std::string> environment(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
}

bool truthy(std::string value) {
    std::transform(value.begin(), value.end(), value.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return value == "1" || value == "true" || value == "yes" || value == "on";
}

// The first line of `path` without surrounding whitespace; nullopt when unreadable or empty.
std::optional<std::string> read_token_file(const fs::path& path) {
    std::ifstream in(path);
    std::string token;
    if (!in || !std::getline(in, token)) return std::nullopt;
    const auto first = token.find_first_not_of(" \t\r");
    if (first == std::string::npos) return std::nullopt;
    return token.substr(first, token.find_last_not_of(" \t\r") - first + 1);
}

bool is_alnum(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

// Why `part` (one side of "org/name") is not a valid id part, or empty when it is.
std::string repo_part_problem(std::string_view part) {
    if (part.empty()) return "an empty name part";
    if (part.size() > kMaxRepoPartLength) {
        return fmt::format("a name part longer than {} characters", kMaxRepoPartLength);
    }
    const auto bad = std::find_if(part.begin(), part.end(), [](char c) {
        return !is_alnum(c) && c != '-' && c != '_' && c != '.';
    });
    if (bad != part.end()) {
        return fmt::format("the character '{}' (allowed: letters, digits, '-', '_', '.')", *bad);
    }
    if (!is_alnum(part.front()) || !is_alnum(part.back())) {
        return "a name part that does not start and end with a letter or digit";
    }
    if (part.find("--") != std::string_view::npos || part.find("..") != std::string_view::npos) {
        return "'--' or '..' inside a name part";
    }
    return {};
}

std::string revision_problem(std::string_view revision) {
    if (revision.empty()) return "an empty revision after '@'";
    if (revision.size() > kMaxRevisionLength) {
        return fmt::format("a revision longer than {} characters", kMaxRevisionLength);
    }
    const auto bad = std::find_if(revision.begin(), revision.end(), [](char c) {
        return !is_alnum(c) && c != '-' && c != '_' && c != '.' && c != '/';
    });
    if (bad != revision.end()) {
        return fmt::format("the character '{}' in the revision", *bad);
    }
    if (revision.find("..") != std::string_view::npos ||
        revision.find("//") != std::string_view::npos || revision.front() == '/' ||
        revision.back() == '/') {
        return "a revision with '..', '//' or a leading or trailing '/'";
    }
    return {};
}

// The part after ':': a quantization tag or a file name (possibly in a folder) of the repository.
std::string gguf_selector_problem(std::string_view selector) {
    if (selector.empty())
        return "nothing after ':' (expected a quantization such as Q4_K_M or a .gguf file)";
    if (selector.size() > kMaxRevisionLength) {
        return fmt::format("a GGUF selector longer than {} characters", kMaxRevisionLength);
    }
    const auto bad = std::find_if(selector.begin(), selector.end(), [](char c) {
        return !is_alnum(c) && c != '-' && c != '_' && c != '.' && c != '/';
    });
    if (bad != selector.end()) return fmt::format("the character '{}' after ':'", *bad);
    if (selector.find("..") != std::string_view::npos || selector.front() == '/') {
        return "a GGUF selector with '..' or a leading '/'";
    }
    return {};
}

}  // namespace

HubOptions HubOptions::from_environment() {
    HubOptions options;
    if (auto endpoint = environment("HF_ENDPOINT")) {
        while (!endpoint->empty() && endpoint->back() == '/') endpoint->pop_back();
        options.endpoint = *endpoint;
    }

    const auto home = environment("HOME");
    fs::path hf_home;
    if (auto value = environment("HF_HOME")) {
        hf_home = *value;
    } else if (auto xdg = environment("XDG_CACHE_HOME")) {
        hf_home = fs::path(*xdg) / "huggingface";
    } else if (home) {
        hf_home = fs::path(*home) / ".cache" / "huggingface";
    }
    if (auto cache = environment("HF_HUB_CACHE")) {
        options.cache_dir = *cache;
    } else if (!hf_home.empty()) {
        options.cache_dir = hf_home / "hub";
    }

    if (auto token = environment("HF_TOKEN")) {
        options.token = *token;
    } else if (auto token_path = environment("HF_TOKEN_PATH")) {
        options.token = read_token_file(*token_path);
    } else if (!hf_home.empty()) {
        options.token = read_token_file(hf_home / "token");
    }

    if (auto offline = environment("HF_HUB_OFFLINE")) options.offline = truthy(*offline);
    return options;
}

ModelRef ModelRef::parse(std::string_view text) {
    ModelRef ref;
    std::string_view id = text;
    if (const auto at = text.find('@'); at != std::string_view::npos) {
        id = text.substr(0, at);
        const std::string_view revision = text.substr(at + 1);
        if (const std::string problem = revision_problem(revision); !problem.empty()) {
            fail(ErrorCode::kInvalidArgument, "invalid model name '{}': {}", text, problem);
        }
        ref.revision = std::string(revision);
    }
    if (const auto colon = id.find(':'); colon != std::string_view::npos) {
        const std::string_view gguf = id.substr(colon + 1);
        if (const std::string problem = gguf_selector_problem(gguf); !problem.empty()) {
            fail(ErrorCode::kInvalidArgument, "invalid model name '{}': {}", text, problem);
        }
        ref.gguf = std::string(gguf);
        id = id.substr(0, colon);
    }
    const auto slash = id.find('/');
    if (slash != std::string_view::npos && id.find('/', slash + 1) != std::string_view::npos) {
        fail(ErrorCode::kInvalidArgument,
             "invalid model name '{}': a Hub id is 'name' or 'org/name' (more than one '/'; a "
             "local directory must exist)",
             text);
    }
    std::vector<std::string_view> parts{id.substr(0, slash)};
    if (slash != std::string_view::npos) parts.push_back(id.substr(slash + 1));
    for (const std::string_view part : parts) {
        if (const std::string problem = repo_part_problem(part); !problem.empty()) {
            fail(ErrorCode::kInvalidArgument, "invalid model name '{}': {}", text, problem);
        }
    }
    ref.repo_id = std::string(id);
    return ref;
}

std::string ModelRef::to_string() const {
    const std::string name = gguf.empty() ? repo_id : repo_id + ":" + gguf;
    return revision == "main" ? name : name + "@" + revision;
}

}  // namespace llmserve::hub
