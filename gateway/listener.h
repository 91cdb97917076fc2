// presence-rest's listening socket and accept loop.
#ifndef PRESENCE_GATEWAY_LISTENER_H_
#define PRESENCE_GATEWAY_LISTENER_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "service/log.h"

namespace presence::rest {

// Accepts connections on the I/O thread and hands each to `on_connection`.
// Out of file descriptors (EMFILE, ENFILE), it waits before accepting again,
// 10 ms doubling to 1 s, instead of spinning on an error that only a closed
// connection can end; waiting clients stay in the listen queue. Accept
// errors are logged at most once a second.
class Listener {
 public:
  using OnConnection = std::function<void(boost::asio::ip::tcp::socket)>;

  Listener(boost::asio::io_context& io, OnConnection on_connection);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // `listen`: HOST:PORT (service/host_port.h); port 0 picks one.
  // INVALID_ARGUMENT for a bad address, UNAVAILABLE if it cannot be bound.
  absl::Status Bind(const std::string& listen);
  int port() const { return port_; }

  // I/O thread only.
  void Start();
  void Stop();

 private:
  void Accept();

  boost::asio::io_context& io_;
  const OnConnection on_connection_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer backoff_timer_;
  absl::Duration backoff_ = absl::ZeroDuration();
  int port_ = 0;
  ThrottledErrorLog log_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_LISTENER_H_
