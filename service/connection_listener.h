// presenced's own listening sockets and accept loop.
#ifndef PRESENCE_SERVICE_CONNECTION_LISTENER_H_
#define PRESENCE_SERVICE_CONNECTION_LISTENER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "service/log.h"

namespace grpc::experimental {
class ExternalConnectionAcceptor;
}  // namespace grpc::experimental

namespace presence {

// Listens on HOST:PORT and hands every accepted connection to a gRPC server
// (ServerBuilder::experimental().AddExternalConnectionAcceptor), instead of
// letting gRPC accept them itself.
//
// Why: gRPC 1.51's accept loop gives up for good on the first accept4()
// error it does not expect, EMFILE included (grpc/grpc#20418): a burst of
// connections that exhausts the file descriptors once leaves the server
// deaf for the rest of its life while the kernel still completes
// handshakes. This loop never stops:
//  - at most `max_connections` connections are open at once; one beyond
//    is accepted and closed at once (the client sees the connection closed,
//    and may retry elsewhere), so the listener never stalls;
//  - when the process is out of descriptors anyway (other files, a low
//    limit), a descriptor held in reserve is freed to accept the waiting
//    connection and close it, then taken back, so the backlog drains and
//    the loop serves again as soon as descriptors are free;
//  - other errors (ENOBUFS, ENOMEM) back off for 100 ms and retry.
// Refusals are logged at most once a second, with counts.
//
// Connections handed over belong to gRPC, which closes them; the listener
// counts them as open until their descriptor is closed (checked by inode, so
// a reused descriptor number is not mistaken for the old connection).
class ConnectionListener {
 public:
  struct Options {
    // HOST:PORT. HOST may be a name (every address it resolves to is
    // bound, e.g. localhost's 127.0.0.1 and ::1), an IPv4 address, or an
    // IPv6 address in brackets; [::] takes IPv4 too. Port 0 picks a free
    // port, the same for every address.
    std::string address;
    int max_connections = 10'000;
    int backlog = 4096;  // the kernel caps it at net.core.somaxconn
  };

  // Binds and listens; nothing is accepted until Start(). UNAVAILABLE naming
  // the address and the reason, e.g. "cannot listen on 127.0.0.1:50051:
  // Address already in use".
  static absl::StatusOr<std::unique_ptr<ConnectionListener>> Bind(
      const Options& options);

  // Stop()s.
  ~ConnectionListener();
  ConnectionListener(const ConnectionListener&) = delete;
  ConnectionListener& operator=(const ConnectionListener&) = delete;

  // The port bound (the one picked, when asked for port 0).
  int port() const { return port_; }

  // Starts the accept thread, which hands connections to `acceptor`. Call
  // once, after the gRPC server has started.
  void Start(
      std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor);

  // Closes the listening sockets and ends the accept thread; new connection
  // attempts are refused by the kernel from then on. Connections already
  // handed over stay open. Idempotent.
  void Stop();

  // Counts, for tests and the log; thread-safe.
  int64_t accepted() const { return accepted_.load(); }
  // Closed at once: over max_connections, or while out of descriptors.
  int64_t refused() const { return refused_.load(); }
  int64_t open_connections() const { return open_.load(); }

 private:
  // A connection handed to gRPC: its descriptor and the socket's inode.
  using Handed = std::pair<int, ino_t>;

  ConnectionListener(const Options& options, std::vector<int> listen_fds,
                     int port, int wake_fd);
  void Run();
  // Accepts until the socket has nothing left; false to back off a while.
  bool AcceptAll(int listen_fd);
  // Drops the connections gRPC has closed from handed_; updates open_.
  void Prune();
  // Out of descriptors (EMFILE): accepts the waiting connection with the
  // reserve descriptor and closes it at once.
  enum class Shed { kOne, kNoneWaiting, kFailed };
  Shed ShedOne(int listen_fd);

  const Options options_;
  const std::vector<int> listen_fds_;
  const int port_;
  const int wake_fd_;  // an eventfd: Stop() writes it to end poll()
  int reserve_fd_ = -1;

  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_;
  std::vector<Handed> handed_;  // accept thread only
  int64_t last_prune_ms_ = 0;   // steady clock, accept thread only
  ThrottledErrorLog log_;

  std::atomic<int64_t> accepted_{0};
  std::atomic<int64_t> refused_{0};
  std::atomic<int64_t> open_{0};
  std::atomic<bool> stopped_{false};
  std::thread thread_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_CONNECTION_LISTENER_H_
