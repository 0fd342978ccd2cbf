#include "server/playground.h"

#include <algorithm>
#include <fstream>

namespace llmserve::server {
namespace {

// The Content-Type of a playground file, by its extension.
std::string static_content_type(const std::filesystem::path& file) {
    const std::string extension = file.extension().string();
    if (extension == ".html") return "text/html; charset=utf-8";
    if (extension == ".js") return "text/javascript; charset=utf-8";
    if (extension == ".css") return "text/css; charset=utf-8";
    if (extension == ".png") return "image/png";
    if (extension == ".svg") return "image/svg+xml";
    if (extension == ".json") return "application/json";
    return "application/octet-stream";
}

}  // namespace

Playground::Playground(const std::string& web_dir, Logger& logger) {
    const std::string dir = web_dir.empty() ? std::string(LLMSERVE_WEB_DIR) : web_dir;
    std::error_code error;
    web_dir_ = std::filesystem::canonical(dir, error);
    if (error || !std::filesystem::is_directory(web_dir_, error)) {
        web_dir_.clear();
        logger.warn("playground not served: its folder is missing", {{"web_dir", dir}});
    }
}

// A GET or HEAD of a regular file below the playground folder (never outside it, also not
// through a symlink); "/" and folders mean their index.html.
bool Playground::serve(const httplib::Request& req, httplib::Response& res) const {
    if (web_dir_.empty() || (req.method != "GET" && req.method != "HEAD")) return false;
    std::filesystem::path relative = std::filesystem::path(req.path).relative_path();
    if (req.path.empty() || req.path.back() == '/') relative /= "index.html";
    for (const auto& part : relative) {
        if (part == "..") return false;
    }
    std::error_code error;
    const std::filesystem::path file = std::filesystem::canonical(web_dir_ / relative, error);
    if (error || !std::filesystem::is_regular_file(file, error)) return false;
    const auto [end, inside] =
        std::mismatch(web_dir_.begin(), web_dir_.end(), file.begin(), file.end());
    if (end != web_dir_.end()) return false;
    std::ifstream in(file, std::ios::binary);
    const std::string contents((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    if (!in && !in.eof()) return false;
    res.set_content(contents, static_content_type(file));
    return true;
}

}  // namespace llmserve::server
