// Tells whether the client of an HTTP request is still connected. cpp-httplib 0.11 (Debian 12)
// gives handlers no access to the connection's socket, so the probe finds it among the
// process's descriptors by its address pair (local port, peer address and port), which is unique
// while the handler runs: the library closes the socket only after the handler returns.
#pragma once

#include <string>

namespace llmserve::server {

class ConnectionProbe {
  public:
    // A probe that never reports a disconnect (when the socket cannot be found).
    ConnectionProbe() = default;

    // Finds the connected TCP socket whose local port is `local_port` and whose peer is
    // `peer_address`:`peer_port` (numeric host, as httplib reports it).
    static ConnectionProbe find(int local_port, const std::string& peer_address, int peer_port);

    bool found() const { return socket_ >= 0; }

    // True once the peer has closed or reset the connection. Never blocks. A peer that only
    // shut down its sending side (a half-close) counts as gone: HTTP clients do not do that
    // while waiting for a response.
    bool client_gone() const;

  private:
    explicit ConnectionProbe(int socket) : socket_(socket) {}
    int socket_ = -1;  // not owned
};

}  // namespace llmserve::server
