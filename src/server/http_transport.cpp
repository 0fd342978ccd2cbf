#include "server/http_transport.h"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "common/memory.h"
#include "server/errors.h"
#include "server/http_parser.h"

namespace llmserve::server {
namespace {

using Clock = std::chrono::steady_clock;

// How often the epoll thread looks for connections past their deadline.
constexpr std::chrono::milliseconds kSweepInterval{100};
// After an error response the connection is half-closed and what the client still sends is read
// and dropped for this long, so that the response is not lost to a reset.
constexpr std::chrono::milliseconds kLingerTime{2000};
// When the process is out of descriptors, accepting pauses this long.
constexpr std::chrono::milliseconds kAcceptPause{100};
constexpr std::size_t kReadChunk = 64 * 1024;
// After a response body this large, freed heap memory is handed back to the system: its JSON
// tree and text (several times its size) would otherwise stay resident. Smaller responses leave
// little, which the next requests reuse; a trim costs far less than generating such a response.
constexpr std::size_t kReleaseMemoryAfterBodyBytes = 1 << 20;

std::string_view reason_phrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 200:
            return "OK";
        case 204:
            return "No Content";
        case 304:
            return "Not Modified";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 422:
            return "Unprocessable Content";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Status";
    }
}

// The numeric host and port of a socket address, as getnameinfo formats them (the form
// ConnectionProbe compares against).
std::pair<std::string, int> numeric_address(const sockaddr_storage& address, socklen_t length) {
    char host[NI_MAXHOST] = "";
    char port[NI_MAXSERV] = "0";
    getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof(host), port,
                sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
    return {host, std::atoi(port)};
}

// Writes all of `data` to a non-blocking socket, waiting up to `timeout` each time it is full.
bool send_all(int fd, std::string_view data, std::chrono::milliseconds timeout) {
    while (!data.empty()) {
        const ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (sent > 0) {
            data.remove_prefix(static_cast<std::size_t>(sent));
            continue;
        }
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd descriptor{fd, POLLOUT, 0};
            const int ready = ::poll(&descriptor, 1, static_cast<int>(timeout.count()));
            if (ready <= 0 || (descriptor.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
            continue;
        }
        return false;
    }
    return true;
}

struct Connection {
    int fd = -1;
    std::string peer_address;
    int peer_port = 0;
    std::string local_address;
    int local_port = 0;
    std::string buffer;  // received, not yet parsed into a request
    RequestParser parser;
    Clock::time_point deadline;
    bool reading = false;    // holds bytes of a request (else idle between requests)
    bool working = false;    // a worker is answering it; the epoll thread leaves it alone
    bool lingering = false;  // answered and half-closed: input is dropped until close
    bool continue_sent = false;
    bool peer_closed = false;

    explicit Connection(const ParseLimits& limits) : parser(limits) {}
};

struct Task {
    Connection* connection = nullptr;
    httplib::Request request;
    bool keep_alive = false;
    int error_status = 0;  // refused by the HTTP layer: the status, and why
    std::string error;
};

}  // namespace

struct HttpTransport::State {
    State(TransportOptions transport_options, Handler request_handler,
          ErrorHandler protocol_error_handler, MetricsRegistry& registry)
        : options(std::move(transport_options)),
          handler(std::move(request_handler)),
          error_handler(std::move(protocol_error_handler)),
          metrics(registry),
          limits{options.max_header_bytes, 100, options.max_body_bytes} {}

    const TransportOptions options;
    const Handler handler;
    const ErrorHandler error_handler;
    MetricsRegistry& metrics;
    const ParseLimits limits;

    int listen_fd = -1;
    int epoll_fd = -1;
    int wake_fd = -1;
    std::atomic<bool> stopping{false};

    // Epoll thread only.
    std::unordered_map<int, std::unique_ptr<Connection>> connections;
    std::unordered_map<std::string, int> per_client;
    std::optional<Clock::time_point> accept_paused_until;
    Clock::time_point next_sweep;

    // Workers hand connections back through this queue.
    std::mutex returned_mutex;
    std::vector<std::pair<Connection*, bool>> returned;  // (connection, keep it open)

    // Sockets being answered by workers: drain() waits for them and may shut them down.
    std::mutex working_mutex;
    std::condition_variable working_changed;
    std::set<int> working;

    std::mutex tasks_mutex;
    std::condition_variable tasks_changed;
    std::deque<Task> tasks;
    bool workers_stopping = false;
    std::vector<std::thread> workers;

    void run_loop();
    void accept_connections();
    void on_readable(Connection& connection);
    void try_parse(Connection& connection);
    void dispatch(Connection& connection, Task task);
    void take_back(Connection& connection, bool keep_alive);
    void close_connection(Connection& connection);
    void begin_linger(Connection& connection);
    void sweep(Clock::time_point now);
    void begin_stop();
    void watch(Connection& connection);
    void wake();

    void work();
    void answer(Task& task);
    // Writes the response (streamed ones chunk by chunk); `body_bytes` = the body bytes written.
    bool write_response(int fd, const httplib::Request& request, httplib::Response& response,
                        bool keep_alive, std::size_t& body_bytes);

    void count_refused(const char* reason) {
        metrics
            .counter("llmserve_http_connections_refused_total",
                     "Connections closed at accept, by reason (per_client_limit, fd_limit).",
                     {{"reason", reason}})
            .inc();
    }
    void update_open_gauge() {
        metrics.gauge("llmserve_http_open_connections", "Client connections open.")
            .set(static_cast<double>(connections.size()));
    }
};

HttpTransport::HttpTransport(TransportOptions options, Handler handler, ErrorHandler error_handler,
                             MetricsRegistry& metrics)
    : state_(std::make_unique<State>(std::move(options), std::move(handler),
                                     std::move(error_handler), metrics)) {}

HttpTransport::~HttpTransport() {
    State& s = *state_;
    for (auto& [fd, connection] : s.connections) ::close(fd);
    for (int fd : {s.listen_fd, s.epoll_fd, s.wake_fd})
        if (fd >= 0) ::close(fd);
}

int HttpTransport::bind() {
    State& s = *state_;
    const TransportOptions& o = s.options;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(o.port);
    if (const int error = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &found)) {
        fail(ErrorCode::kUnavailable, "cannot listen on {}:{} (HOST, PORT): {}", o.host, o.port,
             gai_strerror(error));
    }
    const std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, freeaddrinfo);
    std::string last_error = "no usable address";
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
        const int fd =
            ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_error = std::strerror(errno);
            continue;
        }
        const int yes = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
        if (a->ai_family == AF_INET6) {
            const int no = 0;  // "::" also accepts IPv4, as cpp-httplib did
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no));
        }
        if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, o.backlog) != 0) {
            last_error = std::strerror(errno);
            ::close(fd);
            continue;
        }
        s.listen_fd = fd;
        break;
    }
    if (s.listen_fd < 0) {
        fail(ErrorCode::kUnavailable, "cannot listen on {}:{} (HOST, PORT): {}", o.host, o.port,
             last_error);
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&bound), &length);
    return numeric_address(bound, length).second;
}

void HttpTransport::serve() {
    State& s = *state_;
    s.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    s.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s.epoll_fd < 0 || s.wake_fd < 0) {
        fail(ErrorCode::kInternal, "cannot start the connection loop: {}", std::strerror(errno));
    }
    epoll_event wake_event{};
    wake_event.events = EPOLLIN;
    wake_event.data.fd = s.wake_fd;
    epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.wake_fd, &wake_event);
    epoll_event listen_event{};
    listen_event.events = EPOLLIN;
    listen_event.data.fd = s.listen_fd;
    epoll_ctl(s.epoll_fd, EPOLL_CTL_ADD, s.listen_fd, &listen_event);
    for (int i = 0; i < s.options.worker_threads; ++i) s.workers.emplace_back([&s] { s.work(); });
    s.run_loop();
    {
        std::lock_guard lock(s.tasks_mutex);
        s.workers_stopping = true;
    }
    s.tasks_changed.notify_all();
    for (std::thread& worker : s.workers) worker.join();
    s.workers.clear();
}

void HttpTransport::stop() {
    state_->stopping = true;
    state_->wake();
}

void HttpTransport::drain(Clock::time_point deadline) {
    State& s = *state_;
    std::unique_lock lock(s.working_mutex);
    if (s.working_changed.wait_until(lock, deadline, [&] { return s.working.empty(); })) return;
    // Responses still being written (a client that stopped reading): fail their writes now.
    for (int fd : s.working) ::shutdown(fd, SHUT_RDWR);
    s.working_changed.wait(lock, [&] { return s.working.empty(); });
}

void HttpTransport::State::wake() {
    if (wake_fd < 0) return;
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = ::write(wake_fd, &one, sizeof(one));
}

void HttpTransport::State::run_loop() {
    std::vector<epoll_event> events(256);
    bool stop_begun = false;
    while (true) {
        if (stopping && !stop_begun) {
            begin_stop();
            stop_begun = true;
        }
        if (stop_begun && connections.empty()) break;
        const int ready = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                                     static_cast<int>(kSweepInterval.count()));
        for (int i = 0; i < ready; ++i) {
            const int fd = events[i].data.fd;
            if (fd == wake_fd) {
                std::uint64_t count = 0;
                [[maybe_unused]] const ssize_t n = ::read(wake_fd, &count, sizeof(count));
                std::vector<std::pair<Connection*, bool>> back;
                {
                    std::lock_guard lock(returned_mutex);
                    back.swap(returned);
                }
                for (auto [connection, keep] : back) take_back(*connection, keep);
            } else if (fd == listen_fd) {
                accept_connections();
            } else if (const auto it = connections.find(fd); it != connections.end()) {
                on_readable(*it->second);
            }
        }
        const Clock::time_point now = Clock::now();
        if (accept_paused_until && now >= *accept_paused_until && listen_fd >= 0) {
            accept_paused_until.reset();
            epoll_event listen_event{};
            listen_event.events = EPOLLIN;
            listen_event.data.fd = listen_fd;
            epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &listen_event);
        }
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + kSweepInterval;
        }
    }
}

void HttpTransport::State::begin_stop() {
    if (listen_fd >= 0) {
        ::close(listen_fd);
        listen_fd = -1;
    }
    std::vector<Connection*> idle;
    for (auto& [fd, connection] : connections)
        if (!connection->working) idle.push_back(connection.get());
    for (Connection* connection : idle) close_connection(*connection);
}

void HttpTransport::State::accept_connections() {
    while (listen_fd >= 0) {
        sockaddr_storage address{};
        socklen_t length = sizeof(address);
        const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&address), &length,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                // Out of descriptors: pending connections wait in the backlog for a while.
                count_refused("fd_limit");
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
                accept_paused_until = Clock::now() + kAcceptPause;
            }
            return;
        }
        auto [peer, peer_port] = numeric_address(address, length);
        int& open = per_client[peer];
        if (options.max_connections_per_client > 0 && open >= options.max_connections_per_client) {
            if (open == 0) per_client.erase(peer);
            count_refused("per_client_limit");
            ::close(fd);
            continue;
        }
        ++open;
        const int yes = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
        auto connection = std::make_unique<Connection>(limits);
        connection->fd = fd;
        connection->peer_address = std::move(peer);
        connection->peer_port = peer_port;
        sockaddr_storage local{};
        socklen_t local_length = sizeof(local);
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0) {
            std::tie(connection->local_address, connection->local_port) =
                numeric_address(local, local_length);
        }
        // A new connection must deliver its first request within the read deadline.
        connection->deadline = Clock::now() + options.request_read_timeout;
        Connection& added = *connection;
        connections.emplace(fd, std::move(connection));
        watch(added);
    }
    update_open_gauge();
}

void HttpTransport::State::watch(Connection& connection) {
    epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP;
    event.data.fd = connection.fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, connection.fd, &event);
}

void HttpTransport::State::on_readable(Connection& connection) {
    // Headers, a body at its limit, and chunk framing around it.
    const std::size_t cap =
        limits.max_header_bytes + 2 * static_cast<std::size_t>(limits.max_body_bytes) + kReadChunk;
    char chunk[kReadChunk];
    while (true) {
        const ssize_t n = ::recv(connection.fd, chunk, sizeof(chunk), 0);
        if (n > 0) {
            if (connection.lingering) continue;  // dropped
            if (connection.buffer.empty() && !connection.reading) {
                connection.reading = true;
                connection.deadline = Clock::now() + options.request_read_timeout;
            }
            connection.buffer.append(chunk, static_cast<std::size_t>(n));
            if (connection.buffer.size() > cap) break;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        connection.peer_closed = true;  // orderly close (0) or an error
        break;
    }
    if (connection.lingering) {
        if (connection.peer_closed) close_connection(connection);
        return;
    }
    try_parse(connection);
}

void HttpTransport::State::try_parse(Connection& connection) {
    if (connection.buffer.empty()) {
        if (connection.peer_closed) close_connection(connection);
        return;
    }
    const ParseResult result = connection.parser.parse(connection.buffer);
    if (result.status == ParseResult::Status::kComplete) {
        Task task;
        task.request = std::move(connection.parser.request());
        task.keep_alive = connection.parser.keep_alive() && !connection.peer_closed;
        connection.buffer.erase(0, result.consumed);
        connection.parser.reset();
        dispatch(connection, std::move(task));
        return;
    }
    if (result.status == ParseResult::Status::kError) {
        Task task;
        task.request = std::move(connection.parser.request());
        task.error_status = result.error_status;
        task.error = result.error;
        dispatch(connection, std::move(task));
        return;
    }
    if (connection.peer_closed) {  // the client gave up mid-request: nobody to answer
        close_connection(connection);
        return;
    }
    if (result.expects_continue && !connection.continue_sent) {
        connection.continue_sent = true;
        constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        [[maybe_unused]] const ssize_t sent =
            ::send(connection.fd, kContinue.data(), kContinue.size(), MSG_NOSIGNAL);
    }
}

void HttpTransport::State::dispatch(Connection& connection, Task task) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, connection.fd, nullptr);
    connection.working = true;
    connection.reading = false;
    connection.continue_sent = false;
    task.connection = &connection;
    task.request.remote_addr = connection.peer_address;
    task.request.remote_port = connection.peer_port;
    task.request.local_addr = connection.local_address;
    task.request.local_port = connection.local_port;
    {
        std::lock_guard lock(working_mutex);
        working.insert(connection.fd);
    }
    {
        std::lock_guard lock(tasks_mutex);
        tasks.push_back(std::move(task));
    }
    tasks_changed.notify_one();
}

void HttpTransport::State::take_back(Connection& connection, bool keep_alive) {
    connection.working = false;
    {
        std::lock_guard lock(working_mutex);
        working.erase(connection.fd);
    }
    working_changed.notify_all();
    if (stopping) {
        close_connection(connection);
        return;
    }
    if (!keep_alive) {
        begin_linger(connection);
        return;
    }
    watch(connection);
    // Bytes already here are the next (pipelined) request: its deadline starts now.
    connection.reading = !connection.buffer.empty();
    connection.deadline = Clock::now() + (connection.reading ? options.request_read_timeout
                                                             : options.keep_alive_timeout);
    try_parse(connection);
}

void HttpTransport::State::begin_linger(Connection& connection) {
    if (connection.peer_closed) {
        close_connection(connection);
        return;
    }
    ::shutdown(connection.fd, SHUT_WR);
    connection.lingering = true;
    connection.buffer.clear();
    connection.buffer.shrink_to_fit();
    connection.deadline = Clock::now() + kLingerTime;
    watch(connection);
}

void HttpTransport::State::close_connection(Connection& connection) {
    const int fd = connection.fd;
    const auto client = per_client.find(connection.peer_address);
    if (client != per_client.end() && --client->second <= 0) per_client.erase(client);
    connections.erase(fd);  // destroys `connection`
    ::close(fd);            // also leaves the epoll set
    update_open_gauge();
}

void HttpTransport::State::sweep(Clock::time_point now) {
    std::vector<Connection*> expired;
    for (auto& [fd, connection] : connections)
        if (!connection->working && now >= connection->deadline)
            expired.push_back(connection.get());
    for (Connection* connection : expired) {
        if (!connection->reading || connection->lingering) {
            close_connection(*connection);  // idle past the keep-alive timeout, or done lingering
            continue;
        }
        metrics
            .counter("llmserve_http_request_read_timeouts_total",
                     "Connections closed because a request's headers and body did not arrive "
                     "within REQUEST_READ_TIMEOUT_S.")
            .inc();
        Task task;
        task.error_status = 408;
        task.error = fmt::format(
            "the request's headers and body did not arrive within {} s (REQUEST_READ_TIMEOUT_S)",
            std::chrono::duration<double>(options.request_read_timeout).count());
        task.request = std::move(connection->parser.request());
        dispatch(*connection, std::move(task));
    }
}

void HttpTransport::State::work() {
    while (true) {
        Task task;
        {
            std::unique_lock lock(tasks_mutex);
            tasks_changed.wait(lock, [&] { return workers_stopping || !tasks.empty(); });
            if (tasks.empty()) return;
            task = std::move(tasks.front());
            tasks.pop_front();
        }
        answer(task);
    }
}

void HttpTransport::State::answer(Task& task) {
    Connection& connection = *task.connection;
    bool keep_alive = task.keep_alive && task.error_status == 0 && !stopping;
    std::size_t body_bytes = 0;
    {
        httplib::Response response;
        try {
            if (task.error_status != 0) {
                error_handler(task.request, response, task.error_status, task.error);
            } else {
                handler(task.request, response);
            }
        } catch (...) {
            // The handlers answer their own errors; this is the last line. A content provider
            // already set is dropped, its releaser still runs with the response.
            const ApiError error = api_error_from(std::current_exception());
            response.content_provider_ = nullptr;
            response.headers.clear();
            response.status = error.status;
            response.set_content(error.body(), "application/json");
        }
        if (response.get_header_value("Connection") == "close") keep_alive = false;
        keep_alive =
            write_response(connection.fd, task.request, response, keep_alive, body_bytes) &&
            keep_alive;
    }  // the response's resources are released here, before the connection is reused
    if (body_bytes >= kReleaseMemoryAfterBodyBytes) release_free_heap_memory();
    {
        std::lock_guard lock(returned_mutex);
        returned.emplace_back(&connection, keep_alive);
    }
    wake();
}

bool HttpTransport::State::write_response(int fd, const httplib::Request& request,
                                          httplib::Response& response, bool keep_alive,
                                          std::size_t& body_bytes) {
    const int status = response.status < 0 ? 200 : response.status;
    const bool chunked = static_cast<bool>(response.content_provider_);
    const bool head = request.method == "HEAD";
    std::string out = fmt::format("HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
    for (const auto& [name, value] : response.headers) {
        if (name == "Connection" || name == "Content-Length" || name == "Transfer-Encoding")
            continue;
        out += fmt::format("{}: {}\r\n", name, value);
    }
    if (chunked) {
        out += "Transfer-Encoding: chunked\r\n";
    } else if (status != 204) {  // a 204 has no body, and RFC 9110 forbids its Content-Length
        out += fmt::format("Content-Length: {}\r\n", response.body.size());
    }
    out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    if (head) return send_all(fd, out, options.write_timeout);
    if (!chunked) {
        // Sent apart from the headers rather than copied after them: a body can be tens of MiB.
        // (TCP_NODELAY is set, so the second send is not held back.)
        body_bytes = response.body.size();
        return send_all(fd, out, options.write_timeout) &&
               send_all(fd, response.body, options.write_timeout);
    }
    bool ok = send_all(fd, out, options.write_timeout);
    bool done = false;
    std::size_t offset = 0;
    httplib::DataSink sink;
    sink.write = [&](const char* data, std::size_t size) {
        if (!ok) return false;
        if (size == 0) return true;  // an empty chunk would end the body
        std::string piece = fmt::format("{:x}\r\n", size);
        piece.append(data, size);
        piece += "\r\n";
        ok = send_all(fd, piece, options.write_timeout);
        offset += size;
        return ok;
    };
    sink.done = [&] { done = true; };
    sink.is_writable = [&] { return ok; };
    while (ok && !done) {
        if (!response.content_provider_(offset, 0, sink)) ok = false;
    }
    body_bytes = offset;
    if (ok && done) ok = send_all(fd, "0\r\n\r\n", options.write_timeout);
    response.content_provider_success_ = ok && done;
    return ok && done;
}

}  // namespace llmserve::server
