#include "service/metrics_server.h"

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "service/host_port.h"
#include "service/status_macros.h"

namespace presence {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr char kMetricsContentType[] =
    "text/plain; version=0.0.4; charset=utf-8";

// After an accept error such as EMFILE (no file descriptor left), the
// pending connection stays queued and the listener at once ready again:
// retrying at once would spin, giving up would stop serving for good.
constexpr std::chrono::milliseconds kAcceptRetryDelay(100);

struct ListenAddress {
  std::string host;   // to resolve: no brackets
  std::string port;   // digits, 0 to 65535
  std::string shown;  // HOST as given, for address()
};

absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& listen) {
  absl::StatusOr<HostPort> parsed = ParseHostPort(listen);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot serve metrics on ", listen, ": ", parsed.status().message()));
  }
  return ListenAddress{parsed->host, std::to_string(parsed->port),
                       ShownHost(*parsed)};
}

std::string Describe(const beast::error_code& error) {
  return absl::StrCat(error.value(), " (", error.message(), ")");
}

}  // namespace

// Listen() and Serve() run before the I/O thread starts, the destructor
// once it has stopped it; everything else runs on the I/O thread, which alone
// touches the acceptor, the timer and the connections: no lock.
class MetricsServer::Impl {
 public:
  Impl(std::shared_ptr<prometheus::Collectable> collectable,
       const Limits& limits)
      : collectable_(std::move(collectable)), limits_(limits) {}

  // Closes everything on the I/O thread and joins it.
  ~Impl() {
    if (!io_thread_.joinable()) return;
    asio::post(io_, [this] { Stop(); });
    io_thread_.join();
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Binds and listens on the first of `where`'s addresses that works (before
  // the I/O thread starts). Returns the bound port, or UNAVAILABLE with the
  // reason.
  absl::StatusOr<int> Listen(const ListenAddress& where,
                             const std::string& listen);

  // Starts accepting, on a new I/O thread.
  void Serve() {
    Accept();
    io_thread_ = std::thread([this] { io_.run(); });
  }

 private:
  class Connection;

  beast::error_code BindTo(const tcp::endpoint& endpoint);
  void Accept();
  void OnAccept(const beast::error_code& error, tcp::socket socket);
  void Stop();
  Response Answer(const Request& request) const;

  const std::shared_ptr<prometheus::Collectable> collectable_;
  const Limits limits_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  asio::steady_timer accept_retry_{io_};
  // Open connections, each removed when it closes.
  absl::flat_hash_set<Connection*> connections_;
  bool stopping_ = false;
  std::thread io_thread_;  // last: joined before the rest goes
};

// One HTTP/1.1 connection: reads a request, writes its answer, then reads
// the next one. Kept alive by its pending operation's handler; every path
// that starts none calls Close().
class MetricsServer::Impl::Connection
    : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Impl* server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}
  ~Connection() { Close(); }

  void Start() {
    server_->connections_.insert(this);
    Read();
  }

  // Idempotent. Pending operations end with operation_aborted.
  void Close() {
    if (closed_) return;
    closed_ = true;
    server_->connections_.erase(this);
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(server_->limits_.max_header_bytes));
    parser_->body_limit(server_->limits_.max_header_bytes);
    // For the whole request, not each read: a client sending a byte at a
    // time gets no more time than one sending nothing.
    stream_.expires_after(
        absl::ToChronoNanoseconds(server_->limits_.read_timeout));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) {
          self->OnRead(error);
        });
  }

  void OnRead(const beast::error_code& error) {
    // Stop() may have closed the stream after this read completed.
    if (closed_) return;
    if (error == http::error::header_limit) {
      Response refusal{http::status::request_header_fields_too_large, 11};
      refusal.set(http::field::content_type, "text/plain");
      refusal.body() = "request header too large\n";
      refusal.keep_alive(false);
      refusal.prepare_payload();
      Write(std::move(refusal));
      return;
    }
    if (error) {
      // The client closed, the deadline passed, or the request is malformed
      // or has a body over the limit: nothing worth answering.
      Close();
      return;
    }
    Write(server_->Answer(parser_->get()));
  }

  void Write(Response response) {
    response_ = std::move(response);
    stream_.expires_after(
        absl::ToChronoNanoseconds(server_->limits_.write_timeout));
    http::async_write(
        stream_, response_,
        [self = shared_from_this()](beast::error_code error, size_t) {
          self->OnWrite(error);
        });
  }

  void OnWrite(const beast::error_code& error) {
    if (closed_) return;
    if (error || !response_.keep_alive()) {
      Close();
      return;
    }
    Read();
  }

  Impl* const server_;
  beast::tcp_stream stream_;
  // Outlives each request: it holds what a pipelining client sent ahead.
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Response response_;  // the one write in flight
  bool closed_ = false;
};

absl::StatusOr<int> MetricsServer::Impl::Listen(const ListenAddress& where,
                                                const std::string& listen) {
  beast::error_code error;
  tcp::resolver resolver(io_);
  const tcp::resolver::results_type results = resolver.resolve(
      where.host, where.port,
      tcp::resolver::passive | tcp::resolver::numeric_service, error);
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", where.host, ": ", error.message()));
  }
  std::vector<tcp::endpoint> endpoints;
  for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  // IPv4 first: /metrics used to take IPv4 only, so a host name keeps
  // meaning its IPv4 address where it has one.
  std::stable_partition(
      endpoints.begin(), endpoints.end(),
      [](const tcp::endpoint& endpoint) { return endpoint.address().is_v4(); });
  beast::error_code first_error = asio::error::host_not_found;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    error = BindTo(endpoints[i]);
    if (!error) {
      const tcp::endpoint bound = acceptor_.local_endpoint(error);
      if (!error) return bound.port();
    }
    if (i == 0) first_error = error;
    beast::error_code ignored;
    acceptor_.close(ignored);
  }
  return absl::UnavailableError(
      absl::StrCat("cannot bind to ", listen, ": ", Describe(first_error)));
}

beast::error_code MetricsServer::Impl::BindTo(const tcp::endpoint& endpoint) {
  beast::error_code error;
  acceptor_.open(endpoint.protocol(), error);
  // Lets a restarted presenced bind while its old connections linger in
  // TIME_WAIT; on Linux it never lets two listeners share a port.
  if (!error) acceptor_.set_option(tcp::acceptor::reuse_address(true), error);
  if (!error) acceptor_.bind(endpoint, error);
  if (!error) {
    acceptor_.listen(asio::socket_base::max_listen_connections, error);
  }
  return error;
}

void MetricsServer::Impl::Accept() {
  acceptor_.async_accept(
      [this](const beast::error_code& error, tcp::socket socket) {
        OnAccept(error, std::move(socket));
      });
}

void MetricsServer::Impl::OnAccept(const beast::error_code& error,
                                   tcp::socket socket) {
  if (stopping_) return;
  if (error) {
    accept_retry_.expires_after(kAcceptRetryDelay);
    accept_retry_.async_wait([this](const beast::error_code& wait_error) {
      if (!wait_error && !stopping_) Accept();
    });
    return;
  }
  if (connections_.size() >= static_cast<size_t>(limits_.max_connections)) {
    // Full. Closed now rather than left in the listen queue, where it would
    // hold its place unseen and, with others, stall every later client.
    beast::error_code ignored;
    socket.close(ignored);
  } else {
    std::make_shared<Connection>(this, std::move(socket))->Start();
  }
  Accept();
}

void MetricsServer::Impl::Stop() {
  stopping_ = true;
  beast::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  // Close() erases from connections_.
  const std::vector<Connection*> open(connections_.begin(), connections_.end());
  for (Connection* connection : open) connection->Close();
  // io_.run() returns once the aborted operations' handlers have run.
}

Response MetricsServer::Impl::Answer(const Request& request) const {
  const absl::string_view target(request.target().data(),
                                 request.target().size());
  const absl::string_view path = target.substr(0, target.find('?'));
  const bool head = request.method() == http::verb::head;
  Response response{http::status::ok, 11};
  response.keep_alive(request.keep_alive());
  if (path != "/metrics") {
    response.result(http::status::not_found);
    response.set(http::field::content_type, "text/plain");
    response.body() = "not found: metrics are at /metrics\n";
  } else if (!head && request.method() != http::verb::get) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET, HEAD");
    response.set(http::field::content_type, "text/plain");
    response.body() = "method not allowed: use GET\n";
  } else {
    response.set(http::field::content_type, kMetricsContentType);
    response.body() =
        prometheus::TextSerializer().Serialize(collectable_->Collect());
  }
  if (head) {
    // The length a GET would have, without the body.
    const size_t length = response.body().size();
    response.body().clear();
    response.content_length(length);
  } else {
    response.prepare_payload();
  }
  return response;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen,
    std::shared_ptr<prometheus::Collectable> collectable) {
  return Start(listen, std::move(collectable), Limits());
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen,
    std::shared_ptr<prometheus::Collectable> collectable,
    const Limits& limits) {
  PRESENCE_ASSIGN_OR_RETURN(const ListenAddress where,
                            ParseListenAddress(listen));
  auto impl = std::make_unique<Impl>(std::move(collectable), limits);
  absl::StatusOr<int> port = impl->Listen(where, listen);
  if (!port.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", listen, ": ", port.status().message()));
  }
  impl->Serve();
  return std::unique_ptr<MetricsServer>(new MetricsServer(
      std::move(impl), absl::StrCat(where.shown, ":", *port)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

MetricsServer::~MetricsServer() = default;

}  // namespace presence
