#ifndef PRESENCE_TOOLS_SOAK_TCP_PROXY_H_
#define PRESENCE_TOOLS_SOAK_TCP_PROXY_H_

#include <netdb.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace presence::soak {

// A TCP proxy on a loopback port to one upstream address, whose connections
// can be cut (both sockets shut down at once), as a network failure would:
// the gRPC streams on a cut connection fail with UNAVAILABLE. presence::
// Watcher has no call that breaks its stream and keeps the watcher, so this
// is how the soak makes Watcher's own reconnect-and-resume path run.
//
// Thread-safe. Each connection is pumped by two threads of its own, which
// end when it is cut or either side closes it.
class TcpProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and forwards to `upstream`, a
  // HOST:PORT resolved once, here. INVALID_ARGUMENT if it does not parse or
  // resolve; the errno's status if the listener cannot be set up.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(
      const std::string& upstream);
  // Cuts every connection and waits for its threads.
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  // Cuts up to `n` open connections picked at random (all if n < 0);
  // returns how many.
  int Cut(int n, absl::BitGen& gen);
  int64_t accepted() const { return accepted_.load(); }

 private:
  // Closed once both directions' pumps have let go of it.
  struct Connection {
    Connection(int d, int u) : downstream(d), upstream(u) {}
    ~Connection();
    void Shutdown() const;
    const int downstream;
    const int upstream;
  };

  TcpProxy(int listen_fd, int port, addrinfo* upstream)
      : listen_fd_(listen_fd), port_(port), upstream_(upstream) {}
  void AcceptLoop();
  // Registers a new connection and starts its two pumps; false once the
  // proxy is stopping.
  bool Open(std::shared_ptr<Connection> connection);
  // Copies from one socket to the other until either ends or is cut.
  void Pump(std::shared_ptr<Connection> connection, int from, int to,
            uint64_t id);

  const int listen_fd_;
  const int port_;
  addrinfo* const upstream_;
  std::atomic<int64_t> accepted_{0};
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Connection>> open_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  int pumps_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread acceptor_;
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_TCP_PROXY_H_
