#include "service/connection_listener.h"

#include <fcntl.h>
#include <grpcpp/server_builder.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/host_port.h"
#include "service/log.h"

namespace presence {
namespace {

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status ListenError(const std::string& address, absl::string_view why) {
  return absl::UnavailableError(
      absl::StrCat("cannot listen on ", address, ": ", why));
}

void SetPort(sockaddr* address, int port) {
  if (address->sa_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(address)->sin_port = htons(port);
  } else if (address->sa_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(address)->sin6_port = htons(port);
  }
}

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

// A listening socket on `address`, its port set to *port (and *port set to
// the one picked, if it was 0); -1 with errno set if it cannot be made.
int ListenOn(sockaddr* address, socklen_t length, bool v6only, int backlog,
             int* port) {
  const int fd =
      socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  // A restart may bind while the old process's connections sit in
  // TIME_WAIT. No SO_REUSEPORT: a second presenced must not silently share
  // the port.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (address->sa_family == AF_INET6) {
    int value = v6only ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &value, sizeof(value));
  }
  SetPort(address, *port);
  if (bind(fd, address, length) != 0 || listen(fd, backlog) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  if (*port == 0) {
    sockaddr_storage bound;
    socklen_t bound_length = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_length);
    *port = bound.ss_family == AF_INET
                ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  }
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionListener>> ConnectionListener::Bind(
    const Options& options) {
  const std::string& address = options.address;
  absl::StatusOr<HostPort> where = ParseHostPort(address);
  if (!where.ok()) return ListenError(address, where.status().message());
  const std::string& host = where->host;
  int port = where->port;  // the one picked, once bound, if 0
  const std::string port_text = std::to_string(port);
  std::vector<int> fds;
  if (host.empty() || host == "0.0.0.0" || host == "::") {
    // Every interface, as gRPC reads these: one IPv6 socket that takes IPv4
    // too, or IPv4 alone where the machine has no IPv6.
    sockaddr_in6 any6 = {};
    any6.sin6_family = AF_INET6;
    any6.sin6_addr = in6addr_any;
    int fd = ListenOn(reinterpret_cast<sockaddr*>(&any6), sizeof(any6),
                      /*v6only=*/false, options.backlog, &port);
    if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
      sockaddr_in any4 = {};
      any4.sin_family = AF_INET;
      any4.sin_addr.s_addr = htonl(INADDR_ANY);
      fd = ListenOn(reinterpret_cast<sockaddr*>(&any4), sizeof(any4),
                    /*v6only=*/false, options.backlog, &port);
    }
    if (fd < 0) return ListenError(address, std::strerror(errno));
    fds.push_back(fd);
  } else {
    addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (int e = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found);
        e != 0) {
      return ListenError(address,
                         absl::StrCat("cannot resolve '", host, "': ",
                                      e == EAI_SYSTEM ? std::strerror(errno)
                                                      : gai_strerror(e)));
    }
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> results(found, freeaddrinfo);
    for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
      // A name's IPv6 address takes only IPv6: its IPv4 address, if it has
      // one, gets a socket of its own. The first bind picks the port when 0
      // was asked, the others take the same.
      const int fd = ListenOn(ai->ai_addr, ai->ai_addrlen, /*v6only=*/true,
                              options.backlog, &port);
      if (fd < 0) {
        const std::string why = std::strerror(errno);
        CloseAll(fds);
        return ListenError(address, why);
      }
      fds.push_back(fd);
    }
    if (fds.empty()) {
      return ListenError(address, "it resolves to no IPv4 or IPv6 address");
    }
  }
  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    const std::string why = std::strerror(errno);
    CloseAll(fds);
    return ListenError(address, why);
  }
  return std::unique_ptr<ConnectionListener>(
      new ConnectionListener(options, std::move(fds), port, wake_fd));
}

ConnectionListener::ConnectionListener(const Options& options,
                                       std::vector<int> listen_fds, int port,
                                       int wake_fd)
    : options_(options),
      listen_fds_(std::move(listen_fds)),
      port_(port),
      wake_fd_(wake_fd),
      reserve_fd_(open("/dev/null", O_RDONLY | O_CLOEXEC)) {}

ConnectionListener::~ConnectionListener() {
  Stop();
  CloseAll(listen_fds_);
  close(wake_fd_);
  if (reserve_fd_ >= 0) close(reserve_fd_);
}

void ConnectionListener::Start(
    std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor) {
  acceptor_ = std::move(acceptor);
  last_prune_ms_ = SteadyMillis();
  thread_ = std::thread([this] { Run(); });
}

void ConnectionListener::Stop() {
  if (stopped_.exchange(true)) return;
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  // Closed now, not at destruction: from here the kernel refuses new
  // connections instead of completing handshakes nobody will answer.
  for (int fd : listen_fds_) shutdown(fd, SHUT_RDWR);
}

void ConnectionListener::Run() {
  std::vector<pollfd> polled;
  for (int fd : listen_fds_) polled.push_back({fd, POLLIN, 0});
  polled.push_back({wake_fd_, POLLIN, 0});
  bool back_off = false;
  while (!stopped_.load()) {
    // poll() times out on the monotonic clock. Once a second at least, to
    // keep the count of open connections current, which the cap reads.
    // While backing off, only the wake-up is watched.
    const int watched = back_off ? 1 : static_cast<int>(polled.size());
    pollfd* first = back_off ? &polled.back() : polled.data();
    if (poll(first, watched, back_off ? 100 : 1000) < 0 && errno != EINTR) {
      LogError(absl::StrCat("listener: poll failed: ", std::strerror(errno)));
      back_off = true;
      continue;
    }
    if (stopped_.load()) break;
    back_off = false;
    for (size_t i = 0; i + 1 < polled.size(); ++i) {
      if (polled[i].revents != 0 && !AcceptAll(polled[i].fd)) back_off = true;
      polled[i].revents = 0;
    }
    if (SteadyMillis() - last_prune_ms_ >= 1000) Prune();
  }
}

bool ConnectionListener::AcceptAll(int listen_fd) {
  // At most this many per wake-up, so that a flood of connections cannot keep
  // the loop from Stop(), from the other listening sockets and from Prune().
  constexpr int kMostPerWake = 256;
  for (int n = 0; n < kMostPerWake && !stopped_.load(); ++n) {
    const int fd =
        accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EAGAIN:
          return true;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:  // a firewall rule refused it
          continue;
        case EMFILE:
        case ENFILE:
          switch (ShedOne(listen_fd)) {
            case Shed::kOne:
              continue;
            case Shed::kNoneWaiting:
              return true;
            case Shed::kFailed:
              return false;
          }
          return false;
        default:  // ENOBUFS, ENOMEM: the kernel is short; try again soon
          log_.Log(
              absl::StrCat("listener: accept failed: ", std::strerror(errno)));
          return false;
      }
    }
    // At the cap, look again at which connections gRPC has closed, but not
    // for every connection of a flood: Prune() checks every descriptor.
    if (open_.load() >= options_.max_connections &&
        SteadyMillis() - last_prune_ms_ >= 100) {
      Prune();
    }
    if (open_.load() >= options_.max_connections) {
      ++refused_;  // counted before the client can see the close
      close(fd);
      log_.Log(absl::StrCat(
          "listener: closed a new connection at once: ", open_.load(),
          " connections are open, --max_connections is ",
          options_.max_connections));
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct stat st;
    fstat(fd, &st);
    handed_.emplace_back(fd, st.st_ino);
    ++open_;
    ++accepted_;
    grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters
        connection;
    connection.listener_fd = listen_fd;
    connection.fd = fd;
    acceptor_->HandleNewConnection(&connection);
  }
  return true;  // poll() says at once if more are waiting
}

ConnectionListener::Shed ConnectionListener::ShedOne(int listen_fd) {
  if (reserve_fd_ < 0) {
    reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (reserve_fd_ < 0) {
      log_.Log("listener: out of file descriptors, and none in reserve");
      return Shed::kFailed;
    }
  }
  // accept4() takes a descriptor before it looks at the queue: with none
  // free it fails with EMFILE even when nobody waits. So look first, and
  // free the reserve only for a connection that is there (another thread
  // could take the slot while it is free).
  pollfd waiting{listen_fd, POLLIN, 0};
  if (poll(&waiting, 1, 0) == 0) return Shed::kNoneWaiting;
  close(reserve_fd_);
  const int fd =
      accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  const int accept_error = errno;
  if (fd < 0) {
    reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return accept_error == EAGAIN ? Shed::kNoneWaiting : Shed::kFailed;
  }
  ++refused_;  // counted before the client can see the close
  // The connection is closed by turning its descriptor into the reserve:
  // dup3() closes it and puts a copy of the wake-up eventfd in its place in
  // one step. With close() then open(), another thread (gRPC's, opening a
  // descriptor of its own) could take the slot in between, and the listener
  // would have nothing left to shed the next connection with.
  if (dup3(wake_fd_, fd, O_CLOEXEC) >= 0) {
    reserve_fd_ = fd;
  } else {
    close(fd);
    reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  log_.Log(absl::StrCat(
      "listener: closed a new connection at once: out of file descriptors "
      "(the open-file limit is reached; ",
      open_.load(), " connections open)"));
  return Shed::kOne;
}

void ConnectionListener::Prune() {
  last_prune_ms_ = SteadyMillis();
  handed_.erase(std::remove_if(handed_.begin(), handed_.end(),
                               [](const Handed& h) {
                                 struct stat st;
                                 return fstat(h.first, &st) != 0 ||
                                        st.st_ino != h.second;
                               }),
                handed_.end());
  open_.store(static_cast<int64_t>(handed_.size()));
}

}  // namespace presence
