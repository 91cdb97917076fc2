#include "gateway/rest_server.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/assets.h"
#include "gateway/fanout.h"
#include "gateway/jwt.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "presence/watcher.h"
#include "service/bearer.h"
#include "service/host_port.h"
#include "service/log.h"

namespace presence::rest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using google::protobuf::Struct;
using google::protobuf::util::TimeUtil;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

constexpr size_t kMaxRequestBody = 16 * 1024;

Response JsonResponse(http::status status, const Struct& body) {
  Response response{status, 11};
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  (void)google::protobuf::util::MessageToJsonString(body, &response.body());
  return response;
}

Response ErrorResponse(http::status status, absl::string_view message) {
  Struct body;
  (*body.mutable_fields())["error"].set_string_value(std::string(message));
  Response response = JsonResponse(status, body);
  if (status == http::status::unauthorized) {
    response.set(http::field::www_authenticate, "Bearer");
  }
  return response;
}

// How a failed call to presenced looks to the browser.
Response ErrorFromPresenced(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      return ErrorResponse(http::status::bad_request, status.error_message());
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return ErrorResponse(http::status::too_many_requests,
                           status.error_message());
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return ErrorResponse(http::status::service_unavailable,
                           absl::StrCat("presence service unavailable: ",
                                        status.error_message()));
    default:
      return ErrorResponse(
          http::status::bad_gateway,
          absl::StrCat("presence service error: ", status.error_message()));
  }
}

Response AssetResponse(const char* content_type, absl::string_view content) {
  Response response{http::status::ok, 11};
  response.set(http::field::content_type, content_type);
  response.body() = std::string(content);
  return response;
}

// The query parameter `name` of `target`, if present. Tokens (base64url and
// dots) and id lists (digits and commas) need no percent-decoding.
std::optional<absl::string_view> QueryParameter(absl::string_view target,
                                                absl::string_view name) {
  size_t question = target.find('?');
  if (question == absl::string_view::npos) return std::nullopt;
  for (absl::string_view pair :
       absl::StrSplit(target.substr(question + 1), '&')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first == name) return kv.second;
  }
  return std::nullopt;
}

absl::string_view PathOf(absl::string_view target) {
  return target.substr(0, target.find('?'));
}

// `user_ids=1,5,12` (commas may arrive percent-encoded as %2C).
absl::StatusOr<std::vector<int64_t>> ParseUserIds(absl::string_view target) {
  std::vector<int64_t> ids;
  std::optional<absl::string_view> list = QueryParameter(target, "user_ids");
  if (!list || list->empty()) return ids;
  for (absl::string_view item :
       absl::StrSplit(*list, absl::ByAnyChar(",%"), absl::SkipEmpty())) {
    item = absl::StripPrefix(item, "2C");
    item = absl::StripPrefix(item, "2c");
    int64_t id = 0;
    if (!absl::SimpleAtoi(item, &id) || id <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "user_ids: '", item, "' is not a user id (integer > 0)"));
    }
    ids.push_back(id);
  }
  return ids;
}

// The optional JSON body {"session_id": "..."}: one tab or device of the
// caller. Without it, the caller's default session (Heartbeat) or every
// session (MarkOffline), as the classic endpoints behaved.
absl::StatusOr<std::string> SessionIdFromBody(const Request& request) {
  if (absl::StripAsciiWhitespace(request.body()).empty()) return "";
  Struct body;
  if (!google::protobuf::util::JsonStringToMessage(request.body(), &body)
           .ok()) {
    return absl::InvalidArgumentError(
        "body must be a JSON object, e.g. {\"session_id\": \"tab-1\"}");
  }
  auto it = body.fields().find("session_id");
  if (it == body.fields().end()) return "";
  if (it->second.kind_case() != google::protobuf::Value::kStringValue) {
    return absl::InvalidArgumentError("session_id must be a string");
  }
  return it->second.string_value();
}

// One call to presenced through gRPC's callback API; `done` runs on a gRPC
// thread.
template <typename Req, typename Resp>
struct PresencedCall {
  grpc::ClientContext context;
  Req request;
  Resp response;
};

}  // namespace

class RestServer::Impl {
 public:
  explicit Impl(const RestOptions& options)
      : options_(options),
        client_(options.presenced),
        acceptor_(io_),
        keepalive_timer_(io_) {}

  absl::Status Bind();
  void Run();
  void Shutdown();
  int port() const { return port_; }

  // Called on the I/O thread by an HttpSession with a complete request.
  // `reply` sends the response; `take_socket` hands the connection over to
  // an event stream.
  class HttpSession;
  class EventStream;
  void Route(const std::shared_ptr<HttpSession>& session, Request request);

 private:
  friend class EventStream;
  void Accept();
  void Keepalive();
  absl::StatusOr<TokenClaims> Authenticate(const Request& request) const;
  void Heartbeat(std::shared_ptr<HttpSession> session, int64_t user_id,
                 const Request& request);
  void MarkOffline(std::shared_ptr<HttpSession> session, int64_t user_id,
                   const Request& request);
  void OnlineUsers(std::shared_ptr<HttpSession> session,
                   std::vector<int64_t> only);
  void OpenEventStream(const std::shared_ptr<HttpSession>& session,
                       std::vector<int64_t> users);

  // Starts one unary call; `done(status, response)` is posted to the I/O
  // thread. `start` issues the call on the stub's async() interface.
  template <typename Req, typename Resp, typename StartFn, typename DoneFn>
  void Call(Req request, StartFn start, DoneFn done);

  const RestOptions options_;
  Client client_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  asio::steady_timer keepalive_timer_;
  int port_ = 0;
  std::thread io_thread_;
  std::unique_ptr<Watcher> watcher_;
  bool shut_down_ = false;  // only Shutdown(), on the caller's thread

  // I/O thread only.
  PresenceFanout fanout_;
  absl::flat_hash_set<EventStream*> streams_;

  // Calls to presenced in flight: their completions post to io_, which must
  // outlive them.
  absl::Mutex calls_mu_;
  int calls_in_flight_ ABSL_GUARDED_BY(calls_mu_) = 0;
};

// One HTTP/1.1 connection: reads requests one at a time (keep-alive) and
// writes each response before reading the next.
class RestServer::Impl::HttpSession
    : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Impl* server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}

  void Read() {
    parser_.emplace();
    parser_->body_limit(kMaxRequestBody);
    stream_.expires_after(
        absl::ToChronoNanoseconds(server_->options_.request_timeout));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) {
          self->OnRead(error);
        });
  }

  void Reply(Response response) {
    response.set(http::field::server, "presence-rest");
    response.keep_alive(keep_alive_);
    response.prepare_payload();
    auto owned = std::make_shared<Response>(std::move(response));
    http::async_write(
        stream_, *owned,
        [self = shared_from_this(), owned](beast::error_code error, size_t) {
          if (error || !owned->keep_alive()) {
            self->Close();
          } else {
            self->Read();
          }
        });
  }

  // Hands the connection to an event stream; this session ends.
  tcp::socket TakeSocket() {
    stream_.expires_never();
    return stream_.release_socket();
  }

 private:
  void OnRead(beast::error_code error) {
    if (error == http::error::body_limit) {
      keep_alive_ = false;
      Reply(ErrorResponse(
          http::status::payload_too_large,
          absl::StrCat("request body over ", kMaxRequestBody, " bytes")));
      return;
    }
    if (error) {
      // end_of_stream, a timeout, or a malformed request: nothing to answer.
      Close();
      return;
    }
    Request request = parser_->release();
    keep_alive_ = request.keep_alive();
    server_->Route(shared_from_this(), std::move(request));
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  Impl* const server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
};

// One browser's `text/event-stream`: fed by the fan-out, one write in flight.
// Holds no read buffer while idle: it waits for the socket to become
// readable, which for an event stream means the browser went away.
class RestServer::Impl::EventStream
    : public SseSink,
      public std::enable_shared_from_this<EventStream> {
 public:
  EventStream(Impl* server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)) {}

  void Start(std::vector<int64_t> users) {
    server_->streams_.insert(this);
    beast::error_code ignored;
    socket_.non_blocking(true, ignored);  // for the drain in WaitForClose
    Send(std::make_shared<const std::string>(
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream\r\n"
        "Cache-Control: no-store\r\n"
        "X-Accel-Buffering: no\r\n"
        "Server: presence-rest\r\n"
        "\r\n"
        "retry: 2000\n\n"));
    server_->fanout_.Subscribe(this, std::move(users));
    WaitForClose();
  }

  void Send(const SseFrame& frame) override {
    if (closed_) return;
    if (queued_.size() >= server_->options_.event_queue_limit &&
        !resync_pending_) {
      // Too slow: drop what waits and send one fresh snapshot instead.
      queued_.clear();
      resync_pending_ = true;
      asio::post(socket_.get_executor(),
                 [self = shared_from_this()] { self->Resync(); });
      return;
    }
    if (resync_pending_) return;  // the snapshot will cover it
    queued_.push_back(frame);
    MaybeWrite();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    server_->fanout_.Unsubscribe(this);
    server_->streams_.erase(this);
    queued_.clear();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  void Resync() {
    resync_pending_ = false;
    if (closed_) return;
    SseFrame snapshot = server_->fanout_.SnapshotFor(this);
    if (snapshot != nullptr) Send(snapshot);
  }

  void MaybeWrite() {
    if (!writing_.empty() || queued_.empty()) return;
    writing_.swap(queued_);
    buffers_.clear();
    for (const SseFrame& frame : writing_) {
      buffers_.emplace_back(frame->data(), frame->size());
    }
    asio::async_write(
        socket_, buffers_,
        [self = shared_from_this()](beast::error_code error, size_t) {
          self->writing_.clear();
          if (error) {
            self->Close();
            return;
          }
          self->MaybeWrite();
        });
  }

  void WaitForClose() {
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](
                                                   beast::error_code error) {
      if (error) {
        self->Close();
        return;
      }
      // Readable: the browser closed, or sent bytes an event stream
      // does not expect. Either way, drain and see which.
      char scratch[256];
      beast::error_code read_error;
      size_t n = self->socket_.read_some(asio::buffer(scratch), read_error);
      if (read_error == asio::error::would_block) {
        self->WaitForClose();
        return;
      }
      if (read_error || n == 0) {
        self->Close();
        return;
      }
      self->WaitForClose();
    });
  }

  Impl* const server_;
  tcp::socket socket_;
  std::vector<SseFrame> queued_;
  std::vector<SseFrame> writing_;
  std::vector<asio::const_buffer> buffers_;
  bool closed_ = false;
  bool resync_pending_ = false;
};

absl::Status RestServer::Impl::Bind() {
  absl::StatusOr<HostPort> where = ParseHostPort(options_.listen);
  if (!where.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen must be HOST:PORT, got '", options_.listen, "'"));
  }
  const std::string& host = where->host;
  const int port = where->port;
  beast::error_code error;
  tcp::resolver resolver(io_);
  auto endpoints = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive, error);
  if (error || endpoints.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", host, "': ", error.message()));
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true));
  if (!error) acceptor_.bind(endpoint, error);
  if (!error)
    acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options_.listen, ": ", error.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  return absl::OkStatus();
}

void RestServer::Impl::Run() {
  Accept();
  Keepalive();
  io_thread_ = std::thread([this] { io_.run(); });

  WatcherCallbacks callbacks;
  callbacks.on_snapshot = [this](const v1::Snapshot& snapshot) {
    asio::post(io_, [this, snapshot] { fanout_.ApplySnapshot(snapshot); });
  };
  callbacks.on_change = [this](const v1::PresenceChange& change) {
    asio::post(io_, [this, change] { fanout_.ApplyChange(change); });
  };
  callbacks.on_disconnect = [](const absl::Status& status,
                               absl::Duration retry_in) {
    LogError(absl::StrCat(
        "WatchPresence stream to presenced ended: ", status.ToString(),
        retry_in == absl::InfiniteDuration()
            ? "; not retrying"
            : absl::StrCat("; retrying in ", absl::FormatDuration(retry_in))));
  };
  WatcherOptions watch;  // everyone: browsers' filters apply in the fan-out
  watcher_ = std::make_unique<Watcher>(client_.channel(), std::move(watch),
                                       std::move(callbacks));
}

void RestServer::Impl::Accept() {
  acceptor_.async_accept([this](beast::error_code error, tcp::socket socket) {
    if (error) {
      if (error != asio::error::operation_aborted) {
        LogError(absl::StrCat("accept: ", error.message()));
        Accept();
      }
      return;
    }
    std::make_shared<HttpSession>(this, std::move(socket))->Read();
    Accept();
  });
}

void RestServer::Impl::Keepalive() {
  keepalive_timer_.expires_after(absl::ToChronoNanoseconds(options_.keepalive));
  keepalive_timer_.async_wait([this](beast::error_code error) {
    if (error) return;  // cancelled: shutting down
    static const SseFrame kPing =
        std::make_shared<const std::string>(": keep-alive\n\n");
    fanout_.Broadcast(kPing);
    Keepalive();
  });
}

void RestServer::Impl::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  if (watcher_ != nullptr) watcher_->Stop();  // no more posts from it
  // Close the acceptor and every event stream on the I/O thread, and wait
  // until that has run: a stopped io_context would drop it.
  absl::Notification closed;
  asio::post(io_, [this, &closed] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    keepalive_timer_.cancel();
    std::vector<EventStream*> streams(streams_.begin(), streams_.end());
    for (EventStream* stream : streams) stream->Close();
    closed.Notify();
  });
  closed.WaitForNotification();
  // Then stop the I/O thread: nothing it runs can start a call any more.
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  // Calls already started still complete on gRPC's threads and post to io_,
  // which must outlive them (their handlers are dropped, never run).
  absl::MutexLock lock(&calls_mu_);
  calls_mu_.Await(absl::Condition(
      +[](int* calls) { return *calls == 0; }, &calls_in_flight_));
}

absl::StatusOr<TokenClaims> RestServer::Impl::Authenticate(
    const Request& request) const {
  absl::string_view token;
  auto header = request.find(http::field::authorization);
  if (header != request.end()) {
    absl::string_view value(header->value().data(), header->value().size());
    std::optional<absl::string_view> bearer = BearerToken(value);
    if (!bearer) {
      return absl::UnauthenticatedError(
          "Authorization must be 'Bearer TOKEN' (a JWT)");
    }
    token = *bearer;
  } else {
    // EventSource and navigator.sendBeacon cannot set headers (RFC 6750
    // 2.3: the token may then come as a query parameter).
    std::optional<absl::string_view> query = QueryParameter(
        absl::string_view(request.target().data(), request.target().size()),
        "access_token");
    if (!query) {
      return absl::UnauthenticatedError(
          "missing token: send 'Authorization: Bearer TOKEN' (a JWT)");
    }
    token = *query;
  }
  return VerifyHs256Jwt(token, options_.jwt_secret, absl::Now());
}

void RestServer::Impl::Route(const std::shared_ptr<HttpSession>& session,
                             Request request) {
  absl::string_view target(request.target().data(), request.target().size());
  absl::string_view path = PathOf(target);
  if (!path.empty() && path != "/" && path.back() == '/') {
    path.remove_suffix(1);  // /api/chat/heartbeat/ and .../heartbeat alike
  }
  http::verb method = request.method();
  auto wrong_method = [&](absl::string_view allowed) {
    Response response =
        ErrorResponse(http::status::method_not_allowed,
                      absl::StrCat(path, " takes ", allowed, " only"));
    response.set(http::field::allow, std::string(allowed));
    session->Reply(std::move(response));
  };

  if (path == "/" || path == "/index.html") {
    if (method != http::verb::get) return wrong_method("GET");
    return session->Reply(
        AssetResponse("text/html; charset=utf-8", kIndexHtml));
  }
  if (path == "/presence.js") {
    if (method != http::verb::get) return wrong_method("GET");
    return session->Reply(
        AssetResponse("text/javascript; charset=utf-8", kPresenceJs));
  }
  if (path == "/healthz") {
    Struct body;
    (*body.mutable_fields())["watching"].set_bool_value(fanout_.ready());
    return session->Reply(JsonResponse(
        fanout_.ready() ? http::status::ok : http::status::service_unavailable,
        body));
  }

  enum class Endpoint { kHeartbeat, kMarkOffline, kOnlineUsers, kStream };
  Endpoint endpoint;
  if (path == "/api/chat/heartbeat") {
    endpoint = Endpoint::kHeartbeat;
    if (method != http::verb::post) return wrong_method("POST");
  } else if (path == "/api/chat/mark-offline") {
    endpoint = Endpoint::kMarkOffline;
    if (method != http::verb::post) return wrong_method("POST");
  } else if (path == "/api/chat/online-users") {
    endpoint = Endpoint::kOnlineUsers;
    if (method != http::verb::get) return wrong_method("GET");
  } else if (path == "/api/chat/presence/stream") {
    endpoint = Endpoint::kStream;
    if (method != http::verb::get) return wrong_method("GET");
  } else {
    return session->Reply(ErrorResponse(
        http::status::not_found, absl::StrCat("no such endpoint: ", path)));
  }

  absl::StatusOr<TokenClaims> caller = Authenticate(request);
  if (!caller.ok()) {
    return session->Reply(
        ErrorResponse(http::status::unauthorized, caller.status().message()));
  }
  switch (endpoint) {
    case Endpoint::kHeartbeat:
      return Heartbeat(session, caller->user_id, request);
    case Endpoint::kMarkOffline:
      return MarkOffline(session, caller->user_id, request);
    case Endpoint::kOnlineUsers:
    case Endpoint::kStream: {
      absl::StatusOr<std::vector<int64_t>> users = ParseUserIds(target);
      if (!users.ok()) {
        return session->Reply(
            ErrorResponse(http::status::bad_request, users.status().message()));
      }
      if (endpoint == Endpoint::kOnlineUsers) {
        return OnlineUsers(session, *std::move(users));
      }
      return OpenEventStream(session, *std::move(users));
    }
  }
}

template <typename Req, typename Resp, typename StartFn, typename DoneFn>
void RestServer::Impl::Call(Req request, StartFn start, DoneFn done) {
  {
    absl::MutexLock lock(&calls_mu_);
    ++calls_in_flight_;
  }
  auto call = std::make_shared<PresencedCall<Req, Resp>>();
  call->request = std::move(request);
  call->context.set_deadline(
      absl::ToChronoTime(absl::Now() + options_.presenced.deadline));
  start(&call->context, &call->request, &call->response,
        [this, call, done = std::move(done)](grpc::Status status) mutable {
          asio::post(io_, [call, status, done = std::move(done)]() mutable {
            done(status, call->response);
          });
          absl::MutexLock lock(&calls_mu_);
          --calls_in_flight_;
        });
}

void RestServer::Impl::Heartbeat(std::shared_ptr<HttpSession> session,
                                 int64_t user_id, const Request& http_request) {
  absl::StatusOr<std::string> session_id = SessionIdFromBody(http_request);
  if (!session_id.ok()) {
    return session->Reply(ErrorResponse(http::status::bad_request,
                                        session_id.status().message()));
  }
  v1::HeartbeatRequest request;
  request.set_user_id(user_id);
  request.set_session_id(*session_id);
  Call<v1::HeartbeatRequest, v1::HeartbeatResponse>(
      std::move(request),
      [this](auto* context, auto* req, auto* resp, auto callback) {
        client_.stub().async()->Heartbeat(context, req, resp,
                                          std::move(callback));
      },
      [session](const grpc::Status& status,
                const v1::HeartbeatResponse& response) {
        if (!status.ok()) return session->Reply(ErrorFromPresenced(status));
        Struct body;
        auto& fields = *body.mutable_fields();
        fields["online"].set_bool_value(true);
        fields["became_online"].set_bool_value(response.became_online());
        fields["online_until"].set_string_value(
            TimeUtil::ToString(response.online_until()));
        fields["server_time"].set_string_value(
            TimeUtil::ToString(response.server_time()));
        fields["heartbeat_interval_seconds"].set_number_value(
            static_cast<double>(TimeUtil::DurationToMilliseconds(
                response.heartbeat_interval())) /
            1000.0);
        session->Reply(JsonResponse(http::status::ok, body));
      });
}

void RestServer::Impl::MarkOffline(std::shared_ptr<HttpSession> session,
                                   int64_t user_id,
                                   const Request& http_request) {
  absl::StatusOr<std::string> session_id = SessionIdFromBody(http_request);
  if (!session_id.ok()) {
    return session->Reply(ErrorResponse(http::status::bad_request,
                                        session_id.status().message()));
  }
  v1::MarkOfflineRequest request;
  request.set_user_id(user_id);
  request.set_session_id(*session_id);
  Call<v1::MarkOfflineRequest, v1::MarkOfflineResponse>(
      std::move(request),
      [this](auto* context, auto* req, auto* resp, auto callback) {
        client_.stub().async()->MarkOffline(context, req, resp,
                                            std::move(callback));
      },
      [session](const grpc::Status& status,
                const v1::MarkOfflineResponse& response) {
        if (!status.ok()) return session->Reply(ErrorFromPresenced(status));
        Struct body;
        auto& fields = *body.mutable_fields();
        fields["still_online"].set_bool_value(response.still_online());
        fields["sessions_ended"].set_number_value(response.sessions_ended());
        fields["server_time"].set_string_value(
            TimeUtil::ToString(response.server_time()));
        session->Reply(JsonResponse(http::status::ok, body));
      });
}

// Every page of ListOnline, then {"online_users": [...]}.
void RestServer::Impl::OnlineUsers(std::shared_ptr<HttpSession> session,
                                   std::vector<int64_t> only) {
  struct Listing {
    std::vector<int64_t> only;
    Struct body;
  };
  auto listing = std::make_shared<Listing>();
  listing->only = std::move(only);
  (*listing->body.mutable_fields())["online_users"].mutable_list_value();
  auto next_page = std::make_shared<std::function<void(std::string)>>();
  *next_page = [this, session, listing,
                weak_next = std::weak_ptr<std::function<void(std::string)>>(
                    next_page)](std::string page_token) {
    v1::ListOnlineRequest request;
    request.mutable_user_ids()->Add(listing->only.begin(), listing->only.end());
    request.set_page_size(10'000);
    request.set_page_token(std::move(page_token));
    Call<v1::ListOnlineRequest, v1::ListOnlineResponse>(
        std::move(request),
        [this](auto* context, auto* req, auto* resp, auto callback) {
          client_.stub().async()->ListOnline(context, req, resp,
                                             std::move(callback));
        },
        [session, listing, next = weak_next.lock()](
            const grpc::Status& status,
            const v1::ListOnlineResponse& response) {
          if (!status.ok()) return session->Reply(ErrorFromPresenced(status));
          auto* users = (*listing->body.mutable_fields())["online_users"]
                            .mutable_list_value();
          for (int64_t user : response.online_users()) {
            users->add_values()->set_number_value(static_cast<double>(user));
          }
          if (!response.next_page_token().empty() && next != nullptr) {
            return (*next)(response.next_page_token());
          }
          session->Reply(JsonResponse(http::status::ok, listing->body));
        });
  };
  (*next_page)("");
}

void RestServer::Impl::OpenEventStream(
    const std::shared_ptr<HttpSession>& session, std::vector<int64_t> users) {
  if (streams_.size() >= options_.max_event_streams) {
    return session->Reply(
        ErrorResponse(http::status::service_unavailable,
                      absl::StrCat("too many event streams (", streams_.size(),
                                   "); retry later")));
  }
  std::make_shared<EventStream>(this, session->TakeSocket())
      ->Start(std::move(users));
}

RestServer::RestServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RestServer::~RestServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<RestServer>> RestServer::Start(
    const RestOptions& options) {
  if (options.jwt_secret.empty()) {
    return absl::InvalidArgumentError("the JWT secret is empty");
  }
  auto impl = std::make_unique<Impl>(options);
  absl::Status bound = impl->Bind();
  if (!bound.ok()) return bound;
  impl->Run();
  return std::unique_ptr<RestServer>(new RestServer(std::move(impl)));
}

int RestServer::port() const { return impl_->port(); }

void RestServer::Shutdown() { impl_->Shutdown(); }

}  // namespace presence::rest
