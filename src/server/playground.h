// The playground page (web/): static files served before the API routes and without auth (the
// page itself asks for a key when the API answers 401).
#pragma once

#include <httplib.h>

#include <filesystem>
#include <string>

#include "server/logger.h"

namespace llmserve::server {

class Playground {
  public:
    // Serves `web_dir` (WEB_DIR; empty: the folder baked in at build); a missing folder is
    // logged, not served.
    Playground(const std::string& web_dir, Logger& logger);
    // Answers a GET or HEAD of a file below the folder; false when it is not one.
    bool serve(const httplib::Request& req, httplib::Response& res) const;

  private:
    std::filesystem::path web_dir_;  // empty when not served
};

}  // namespace llmserve::server
