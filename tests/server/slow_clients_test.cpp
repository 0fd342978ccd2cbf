// The slow-client attack of issue 17 against the real binary: 400 slowloris connections (one
// header line every second, never finishing) and 400 idle ones, spread over several loopback
// addresses, while a normal client's requests must each succeed within 1 s.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <iostream>

#include "server_process.h"

namespace llmserve::server::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kSlowloris = 400;
constexpr int kIdle = 400;
constexpr int kAddresses = 8;  // 127.0.0.2 .. 127.0.0.9: 100 connections each

int connect_from(const std::string& source, int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &local.sin_addr);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
        ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

TEST(SlowClients, NormalRequestsSucceedWithin1sDuring400SlowlorisAnd400IdleConnections) {
    // Both processes hold ~800 sockets: make sure the descriptor limit allows it (the server
    // inherits the raised limit).
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    const rlim_t needed = 4 * (kSlowloris + kIdle);
    if (limit.rlim_cur < needed) {
        limit.rlim_cur = std::min(limit.rlim_max, needed);
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur < needed) GTEST_SKIP() << "RLIMIT_NOFILE is below " << needed;

    ServerProcess server;
    // Slowloris connections start their request at once; the idle ones never send a byte.
    std::vector<int> slowloris, idle;
    const auto connect_start = Clock::now();
    for (int i = 0; i < kSlowloris + kIdle; ++i) {
        const std::string source = "127.0.0." + std::to_string(2 + i % kAddresses);
        const int fd = connect_from(source, server.port());
        ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
        if (i % 2 == 0) {
            const std::string start = "POST /generate HTTP/1.1\r\nHost: x\r\n";
            ::send(fd, start.data(), start.size(), MSG_NOSIGNAL);
            slowloris.push_back(fd);
        } else {
            idle.push_back(fd);
        }
    }
    const double connect_seconds =
        std::chrono::duration<double>(Clock::now() - connect_start).count();
    EXPECT_LT(connect_seconds, 3.0) << "800 connects took " << connect_seconds << " s";
    std::atomic<bool> attacking{true};
    std::thread drip([&] {
        for (int n = 0; attacking; ++n) {
            const std::string line = "X-Slow-" + std::to_string(n) + ": 1\r\n";
            for (const int fd : slowloris) ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
            for (int t = 0; t < 10 && attacking; ++t) std::this_thread::sleep_for(100ms);
        }
    });

    // A normal client, a new connection per request, for about 4 s of the attack.
    double slowest = 0;
    double held = 0;  // the server's open connections, seen from /metrics
    int succeeded = 0;
    const auto end = Clock::now() + 4s;
    for (int i = 0; Clock::now() < end; ++i) {
        auto client = server.client(std::chrono::seconds(5));
        const auto start = Clock::now();
        const auto result =
            i % 3 == 0 ? client->Get("/health")
            : i % 3 == 1
                ? client->Get("/metrics")
                : post_json(*client, "/generate",
                            {{"prompt", "The jury said"}, {"max_length", 2}, {"temperature", 0}});
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        ASSERT_TRUE(result) << "request " << i << " failed: " << httplib::to_string(result.error());
        EXPECT_EQ(result->status, 200) << result->body;
        slowest = std::max(slowest, seconds);
        if (i % 3 == 1) {
            held = std::max(held, metric_value(result->body, "llmserve_http_open_connections"));
        }
        ++succeeded;
        std::this_thread::sleep_for(50ms);
    }
    attacking = false;
    drip.join();
    EXPECT_LT(slowest, 1.0) << "the slowest of " << succeeded << " requests";
    EXPECT_GE(succeeded, 10);
    EXPECT_GE(held, kSlowloris + kIdle) << "the attack's connections were not all held open";
    std::cout << fmt::format(
        "{} connects in {:.2f} s; {} normal requests during the attack, slowest {:.0f} ms; the "
        "server held {} connections\n",
        kSlowloris + kIdle, connect_seconds, succeeded, slowest * 1000, held);
    for (const int fd : slowloris) ::close(fd);
    for (const int fd : idle) ::close(fd);
}

}  // namespace
}  // namespace llmserve::server::testing
