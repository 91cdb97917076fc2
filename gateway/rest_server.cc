#include "gateway/rest_server.h"

#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "gateway/cors.h"
#include "gateway/event_stream.h"
#include "gateway/fanout.h"
#include "gateway/http_session.h"
#include "gateway/listener.h"
#include "gateway/metrics.h"
#include "gateway/router.h"
#include "gateway/upstream.h"
#include "prometheus/registry.h"
#include "service/metrics_server.h"

namespace presence::rest {

// What event streams are told while presenced is out of reach.
constexpr char kStaleReason[] =
    "the presence service is unreachable; reconnecting";

namespace asio = boost::asio;

class RestServer::Impl {
 public:
  Impl(const RestOptions& options, RouterOptions router_options)
      : options_(options),
        upstream_(UpstreamOptionsOf(options), io_, &metrics_, WatchCallbacks()),
        streams_(&fanout_, &metrics_, options.event_queue_limit),
        router_(std::move(router_options), &upstream_, &streams_),
        listener_(io_,
                  [this](asio::ip::tcp::socket socket) {
                    HttpLimits limits;
                    limits.request_timeout = options_.request_timeout;
                    std::make_shared<HttpSession>(std::move(socket), &router_,
                                                  &metrics_, limits)
                        ->Read();
                  }),
        keepalive_timer_(io_) {}

  absl::Status Bind() {
    absl::Status bound = listener_.Bind(options_.listen);
    if (!bound.ok() || options_.metrics_listen.empty()) return bound;
    absl::StatusOr<std::unique_ptr<MetricsServer>> metrics_server =
        MetricsServer::Start(options_.metrics_listen, metrics_.registry());
    if (!metrics_server.ok()) {
      return absl::Status(metrics_server.status().code(),
                          absl::StrCat("--metrics_listen: ",
                                       metrics_server.status().message()));
    }
    metrics_server_ = *std::move(metrics_server);
    return absl::OkStatus();
  }

  void Run() {
    asio::post(io_, [this] {
      listener_.Start();
      upstream_.StartWatch();
      Keepalive();
    });
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void Shutdown() {
    if (shut_down_) return;
    shut_down_ = true;
    // Stop accepting, the watch and every event stream on the I/O thread,
    // and wait until that has run: a stopped io_context would drop it.
    absl::Notification closed;
    asio::post(io_, [this, &closed] {
      listener_.Stop();
      upstream_.StopWatch();
      keepalive_timer_.cancel();
      streams_.CloseAll();
      closed.Notify();
    });
    closed.WaitForNotification();
    // Then stop the I/O thread: nothing it runs can start a call any more.
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
    // Calls already started still complete on gRPC's threads and post to
    // io_, which must outlive them (their handlers are dropped, never run).
    upstream_.WaitForCalls();
    metrics_server_.reset();
  }

  int port() const { return listener_.port(); }
  std::string metrics_address() const {
    return metrics_server_ == nullptr ? "" : metrics_server_->address();
  }

 private:
  static UpstreamOptions UpstreamOptionsOf(const RestOptions& options) {
    UpstreamOptions upstream;
    upstream.presenced = options.presenced;
    upstream.check_interval = options.upstream_check_interval;
    return upstream;
  }

  Upstream::WatchCallbacks WatchCallbacks() {
    Upstream::WatchCallbacks callbacks;
    callbacks.on_snapshot = [this](const v1::Snapshot& snapshot) {
      fanout_.ApplySnapshot(snapshot);
    };
    callbacks.on_change = [this](const v1::PresenceChange& change) {
      fanout_.ApplyChange(change);
    };
    // Browsers learn that the view is stale, not why: the reason names
    // presenced's address and presence-rest's flags, which is for the log
    // and /healthz (an operator's endpoint), not for every page.
    callbacks.on_lost = [this](const std::string&) {
      fanout_.MarkStale(kStaleReason);
    };
    return callbacks;
  }

  void Keepalive() {
    keepalive_timer_.expires_after(
        absl::ToChronoNanoseconds(options_.keepalive));
    keepalive_timer_.async_wait([this](boost::system::error_code error) {
      if (error) return;  // cancelled: shutting down
      static const SseFrame kPing =
          std::make_shared<const std::string>(": keep-alive\n\n");
      fanout_.Broadcast(kPing);
      Keepalive();
    });
  }

  const RestOptions options_;
  // Destroyed last: handlers still queued in it refer to what follows only
  // by pointer.
  asio::io_context io_{1};
  GatewayMetrics metrics_;
  PresenceFanout fanout_;  // I/O thread only
  Upstream upstream_;
  EventStreams streams_;
  Router router_;
  Listener listener_;
  asio::steady_timer keepalive_timer_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::thread io_thread_;
  bool shut_down_ = false;  // only Shutdown(), on the caller's thread
};

RestServer::RestServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RestServer::~RestServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<RestServer>> RestServer::Start(
    const RestOptions& options) {
  RouterOptions router;
  if (options.jwt_secret.empty()) {
    return absl::InvalidArgumentError("the JWT secret is empty");
  }
  router.jwt_secret = options.jwt_secret;
  absl::StatusOr<CorsPolicy> cors = CorsPolicy::Parse(options.cors_origins);
  if (!cors.ok()) return cors.status();
  router.cors = *std::move(cors);
  router.max_event_streams = options.max_event_streams;
  auto impl = std::make_unique<Impl>(options, std::move(router));
  absl::Status bound = impl->Bind();
  if (!bound.ok()) return bound;
  impl->Run();
  return std::unique_ptr<RestServer>(new RestServer(std::move(impl)));
}

int RestServer::port() const { return impl_->port(); }

std::string RestServer::metrics_address() const {
  return impl_->metrics_address();
}

void RestServer::Shutdown() { impl_->Shutdown(); }

}  // namespace presence::rest
