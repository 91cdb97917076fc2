#include "tools/soak/tcp_proxy.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "service/host_port.h"

namespace presence::soak {

TcpProxy::Connection::~Connection() {
  close(downstream);
  close(upstream);
}

void TcpProxy::Connection::Shutdown() const {
  shutdown(downstream, SHUT_RDWR);
  shutdown(upstream, SHUT_RDWR);
}

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(
    const std::string& upstream) {
  absl::StatusOr<HostPort> server = ParseHostPort(upstream);
  if (!server.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--server: ", server.status().message(), ", got ", upstream));
  }
  const std::string& host = server->host;
  const std::string port = std::to_string(server->port);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* resolved = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &resolved) != 0 ||
      resolved == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve ", host));
  }
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 128) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(resolved);
    return absl::ErrnoToStatus(error, "proxy listener");
  }
  std::unique_ptr<TcpProxy> proxy(
      new TcpProxy(fd, ntohs(address.sin_port), resolved));
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  acceptor_.join();
  close(listen_fd_);
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, connection] : open_) connection->Shutdown();
    auto idle = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pumps_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }
  freeaddrinfo(upstream_);
}

void TcpProxy::AcceptLoop() {
  for (;;) {
    const int downstream = accept(listen_fd_, nullptr, nullptr);
    if (downstream < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    const int upstream = socket(upstream_->ai_family, SOCK_STREAM, 0);
    if (upstream < 0 ||
        connect(upstream, upstream_->ai_addr, upstream_->ai_addrlen) != 0) {
      if (upstream >= 0) close(upstream);
      close(downstream);
      continue;
    }
    const int one = 1;
    setsockopt(downstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++accepted_;
    if (!Open(std::make_shared<Connection>(downstream, upstream))) return;
  }
}

bool TcpProxy::Open(std::shared_ptr<Connection> connection) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  const uint64_t id = next_id_++;
  open_[id] = connection;
  pumps_ += 2;
  std::thread([this, connection, id] {
    Pump(connection, connection->downstream, connection->upstream, id);
  }).detach();
  std::thread([this, connection, id] {
    Pump(connection, connection->upstream, connection->downstream, id);
  }).detach();
  return true;
}

void TcpProxy::Pump(std::shared_ptr<Connection> connection, int from, int to,
                    uint64_t id) {
  std::vector<char> buffer(64 * 1024);
  for (;;) {
    const ssize_t n = recv(from, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t sent = 0;
    while (sent < n) {
      const ssize_t m = send(to, buffer.data() + sent, n - sent, MSG_NOSIGNAL);
      if (m < 0 && errno == EINTR) continue;
      if (m <= 0) break;
      sent += m;
    }
    if (sent < n) break;
  }
  // Either side ended or was cut: end both directions.
  connection->Shutdown();
  connection.reset();
  absl::MutexLock lock(&mu_);
  open_.erase(id);
  --pumps_;
}

int TcpProxy::Cut(int n, absl::BitGen& gen) {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Connection>> open;
  for (auto& [id, connection] : open_) open.push_back(connection);
  std::shuffle(open.begin(), open.end(), gen);
  if (n >= 0 && static_cast<size_t>(n) < open.size()) open.resize(n);
  for (auto& connection : open) connection->Shutdown();
  return static_cast<int>(open.size());
}

}  // namespace presence::soak
