#include "gateway/listener.h"

#include <algorithm>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "service/host_port.h"

namespace presence::rest {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(10);
constexpr absl::Duration kMostBackoff = absl::Seconds(1);
}  // namespace

Listener::Listener(asio::io_context& io, OnConnection on_connection)
    : io_(io),
      on_connection_(std::move(on_connection)),
      acceptor_(io),
      backoff_timer_(io) {}

absl::Status Listener::Bind(const std::string& listen) {
  absl::StatusOr<HostPort> where = ParseHostPort(listen);
  if (!where.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen: ", where.status().message(), ", got '", listen, "'"));
  }
  error_code error;
  tcp::resolver resolver(io_);
  auto endpoints = resolver.resolve(where->host, std::to_string(where->port),
                                    tcp::resolver::passive, error);
  if (error || endpoints.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", where->host, "': ", error.message()));
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true));
  if (!error) acceptor_.bind(endpoint, error);
  if (!error) {
    acceptor_.listen(asio::socket_base::max_listen_connections, error);
  }
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ", error.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  return absl::OkStatus();
}

void Listener::Start() { Accept(); }

void Listener::Stop() {
  error_code ignored;
  acceptor_.close(ignored);
  backoff_timer_.cancel();
}

void Listener::Accept() {
  acceptor_.async_accept([this](error_code error, tcp::socket socket) {
    if (error == asio::error::operation_aborted) return;  // stopped
    if (!error) {
      backoff_ = absl::ZeroDuration();
      on_connection_(std::move(socket));
      return Accept();
    }
    if (error == asio::error::no_descriptors ||
        error == asio::error::no_buffer_space || error.value() == ENFILE ||
        error == asio::error::no_memory) {
      // Accepting again at once fails again at once, until a connection
      // closes: a busy loop and a flood of log lines.
      backoff_ = std::clamp(backoff_ * 2, kFirstBackoff, kMostBackoff);
      log_.Log(absl::StrCat("accept: ", error.message(),
                            "; accepting again in ",
                            absl::FormatDuration(backoff_)));
      backoff_timer_.expires_after(absl::ToChronoNanoseconds(backoff_));
      backoff_timer_.async_wait([this](error_code timer_error) {
        if (!timer_error) Accept();
      });
      return;
    }
    // The client's trouble (it reset before we took it, say): the next one
    // is unaffected.
    log_.Log(absl::StrCat("accept: ", error.message()));
    Accept();
  });
}

}  // namespace presence::rest
