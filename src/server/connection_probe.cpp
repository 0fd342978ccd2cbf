#include "server/connection_probe.h"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <charconv>
#include <cstring>
#include <memory>
#include <optional>

namespace llmserve::server {
namespace {

// The numeric host and port of a socket address, formatted as httplib does.
std::optional<std::pair<std::string, int>> numeric_address(const sockaddr_storage& address,
                                                           socklen_t length) {
    char host[NI_MAXHOST];
    char port[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return std::nullopt;
    }
    int port_number = 0;
    std::from_chars(port, port + std::strlen(port), port_number);
    return std::make_pair(std::string(host), port_number);
}

bool socket_matches(int fd, int local_port, const std::string& peer_address, int peer_port) {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return false;
    if (address.ss_family != AF_INET && address.ss_family != AF_INET6) return false;
    const auto local = numeric_address(address, length);
    if (!local || local->second != local_port) return false;
    length = sizeof(address);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return false;
    const auto peer = numeric_address(address, length);
    return peer && peer->second == peer_port && peer->first == peer_address;
}

}  // namespace

ConnectionProbe ConnectionProbe::find(int local_port, const std::string& peer_address,
                                      int peer_port) {
    const std::unique_ptr<DIR, int (*)(DIR*)> directory(opendir("/proc/self/fd"), closedir);
    if (!directory) return ConnectionProbe();
    while (const dirent* entry = readdir(directory.get())) {
        int fd = -1;
        const char* end = entry->d_name + std::strlen(entry->d_name);
        const auto [ptr, ec] = std::from_chars(entry->d_name, end, fd);
        if (ec != std::errc{} || ptr != end) continue;  // "." and ".."
        if (socket_matches(fd, local_port, peer_address, peer_port)) return ConnectionProbe(fd);
    }
    return ConnectionProbe();
}

bool ConnectionProbe::client_gone() const {
    if (socket_ < 0) return false;
    pollfd descriptor{socket_, POLLIN | POLLRDHUP, 0};
    if (poll(&descriptor, 1, 0) <= 0) return false;
    if (descriptor.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (descriptor.revents & POLLIN) {
        // Readable without RDHUP: pipelined bytes (still connected) or an orderly close.
        char byte;
        return recv(socket_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    return false;
}

}  // namespace llmserve::server
