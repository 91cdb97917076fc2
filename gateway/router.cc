#include "gateway/router.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gateway/assets.h"
#include "gateway/json.h"
#include "gateway/status_body.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/bearer.h"
#include "service/request_validation.h"
#include "service/status_macros.h"

namespace presence::rest {
namespace {

using google::protobuf::Struct;

constexpr char kSessionHeader[] = "X-Presence-Session";

absl::string_view View(boost::beast::string_view text) {
  return absl::string_view(text.data(), text.size());
}

enum class Endpoint {
  kPage,
  kScript,
  kHealth,
  kHeartbeat,
  kMarkOffline,
  kOnlineUsers,
  kStream,
  kStatus,
  kPresence,
};

struct Route {
  Endpoint endpoint;
  const char* label;  // presence_rest_requests_total{route}
  http::verb method;
  const char* method_name;
};

std::optional<Route> FindRoute(absl::string_view path) {
  if (!path.empty() && path != "/" && path.back() == '/') {
    path.remove_suffix(1);  // /api/chat/heartbeat/ and .../heartbeat alike
  }
  if (path == "/" || path == "/index.html") {
    return Route{Endpoint::kPage, "static", http::verb::get, "GET"};
  }
  if (path == "/presence.js") {
    return Route{Endpoint::kScript, "static", http::verb::get, "GET"};
  }
  if (path == "/healthz") {
    return Route{Endpoint::kHealth, "healthz", http::verb::get, "GET"};
  }
  if (path == "/api/chat/heartbeat") {
    return Route{Endpoint::kHeartbeat, "heartbeat", http::verb::post, "POST"};
  }
  if (path == "/api/chat/mark-offline") {
    return Route{Endpoint::kMarkOffline, "mark_offline", http::verb::post,
                 "POST"};
  }
  if (path == "/api/chat/online-users") {
    return Route{Endpoint::kOnlineUsers, "online_users", http::verb::get,
                 "GET"};
  }
  if (path == "/api/chat/presence/stream") {
    return Route{Endpoint::kStream, "presence_stream", http::verb::get, "GET"};
  }
  if (path == "/api/chat/status") {
    return Route{Endpoint::kStatus, "status", http::verb::post, "POST"};
  }
  if (path == "/api/chat/presence") {
    return Route{Endpoint::kPresence, "presence", http::verb::get, "GET"};
  }
  return std::nullopt;
}

// The Origin header, "" without one.
absl::string_view OriginOf(const Request& request) {
  auto it = request.find(http::field::origin);
  return it == request.end() ? absl::string_view() : View(it->value());
}

// A CORS preflight: an OPTIONS request that names the method to come.
bool IsPreflight(const Request& request) {
  return request.method() == http::verb::options &&
         request.find(http::field::access_control_request_method) !=
             request.end();
}

// What `route` lets a page of `origin` send, or 403 for an origin that
// --cors_origins does not list.
Response PreflightResponse(const Route& route, absl::string_view origin,
                           bool cross_origin_allowed) {
  if (!cross_origin_allowed) {
    return ErrorResponse(
        http::status::forbidden,
        absl::StrCat("origin '", origin.empty() ? "(none)" : origin,
                     "' may not call presence-rest: it is not in "
                     "--cors_origins"));
  }
  Response response{http::status::no_content, 11};
  response.set(http::field::access_control_allow_methods, route.method_name);
  response.set(http::field::access_control_allow_headers,
               CorsPolicy::kAllowHeaders);
  response.set(http::field::access_control_max_age, CorsPolicy::kMaxAgeSeconds);
  return response;
}

Response MethodNotAllowedResponse(absl::string_view path, const Route& route) {
  Response response =
      ErrorResponse(http::status::method_not_allowed,
                    absl::StrCat(path, " takes ", route.method_name, " only"));
  response.set(http::field::allow, route.method_name);
  return response;
}

// Upstream's answer, as the reply to `session`.
Upstream::Done ReplyTo(const std::shared_ptr<HttpSession>& session) {
  return [session](Response response) { session->Reply(std::move(response)); };
}

// A session id chosen by a frontend (a UUID, random base64url): 1 to 128 of
// [A-Za-z0-9._:-], the rule presence_django applies to the same header, so
// that both backends accept the same ids. Stricter than presenced's
// (printable ASCII): no spaces or quotes reach its logs. `where` names the
// header or the body field in the error.
absl::Status CheckSessionId(absl::string_view value, absl::string_view where) {
  if (value.empty() || value.size() > kMaxSessionIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " must be 1 to ", kMaxSessionIdBytes, " characters, got ",
        value.size(), "; send none for the user's default session"));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != ':' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       " may hold only letters, digits and . _ : -; "
                       "character ",
                       i + 1, " is not one of them"));
    }
  }
  return absl::OkStatus();
}

// What a heartbeat or mark-offline says about the caller's session.
struct SessionRequest {
  // The X-Presence-Session header, else the body's {"session_id": "..."},
  // else "" (the default session for a heartbeat, every session for
  // mark-offline).
  std::string session_id;
  // The body's {"idle": true} (heartbeats): not used since the previous
  // heartbeat.
  bool idle = false;
};

// The body may carry other fields, such as the chat product's
// {"timestamp": "..."}: the server's clock decides, so they are ignored.
// With the header, a body that is not a JSON object is ignored too, as it
// always was.
absl::StatusOr<SessionRequest> SessionRequestOf(const Request& request) {
  SessionRequest session;
  auto header = request.find(kSessionHeader);
  if (header != request.end()) {
    absl::string_view value = View(header->value());
    PRESENCE_RETURN_IF_ERROR(CheckSessionId(value, kSessionHeader));
    session.session_id = std::string(value);
  }
  if (absl::StripAsciiWhitespace(request.body()).empty()) return session;
  Struct body;
  if (!google::protobuf::util::JsonStringToMessage(request.body(), &body)
           .ok()) {
    if (header != request.end()) return session;
    return absl::InvalidArgumentError(
        "body must be a JSON object, e.g. {\"session_id\": \"tab-1\"}");
  }
  if (auto idle = body.fields().find("idle"); idle != body.fields().end()) {
    if (idle->second.kind_case() != google::protobuf::Value::kBoolValue) {
      return absl::InvalidArgumentError("idle must be true or false");
    }
    session.idle = idle->second.bool_value();
  }
  if (header != request.end()) return session;  // the header wins
  auto it = body.fields().find("session_id");
  if (it == body.fields().end()) return session;
  if (it->second.kind_case() != google::protobuf::Value::kStringValue) {
    return absl::InvalidArgumentError("session_id must be a string");
  }
  PRESENCE_RETURN_IF_ERROR(
      CheckSessionId(it->second.string_value(), "session_id"));
  session.session_id = it->second.string_value();
  return session;
}

}  // namespace

absl::StatusOr<TokenClaims> Router::Authenticate(const Request& request,
                                                 const Query& query) const {
  absl::string_view token;
  auto header = request.find(http::field::authorization);
  if (header != request.end()) {
    std::optional<absl::string_view> bearer =
        BearerToken(View(header->value()));
    if (!bearer) {
      return absl::UnauthenticatedError(
          "Authorization must be 'Bearer TOKEN' (a JWT)");
    }
    token = *bearer;
  } else {
    // EventSource and navigator.sendBeacon cannot set headers (RFC 6750
    // 2.3: the token may then come as a query parameter).
    std::optional<absl::string_view> in_query = query.Get("access_token");
    if (!in_query) {
      return absl::UnauthenticatedError(
          "missing token: send 'Authorization: Bearer TOKEN' (a JWT)");
    }
    token = *in_query;
  }
  return VerifyHs256Jwt(token, options_.jwt_secret, absl::Now());
}

bool Router::AddCorsHeaders(HttpSession& session,
                            absl::string_view origin) const {
  // An answer for a listed origin names it; every answer says that it
  // depends on the Origin, so that caches keep them apart.
  const bool cross_origin_allowed =
      !origin.empty() && options_.cors.Allows(origin);
  if (options_.cors.enabled()) session.AddHeader(http::field::vary, "Origin");
  if (cross_origin_allowed) {
    session.AddHeader(http::field::access_control_allow_origin,
                      std::string(origin));
  }
  return cross_origin_allowed;
}

Response Router::HealthResponse() const {
  // Healthy only while browsers get live presence: the stream to presenced
  // is up and has its snapshot.
  Struct body;
  auto& fields = *body.mutable_fields();
  fields["watching"].set_bool_value(upstream_->live());
  if (!upstream_->live()) {
    fields["reason"].set_string_value(upstream_->lost_reason());
  }
  return JsonResponse(
      upstream_->live() ? http::status::ok : http::status::service_unavailable,
      JsonObject(body));
}

void Router::UpdateSession(const std::shared_ptr<HttpSession>& session,
                           const Request& request, int64_t user_id,
                           bool heartbeat) {
  absl::StatusOr<SessionRequest> presence_session = SessionRequestOf(request);
  if (!presence_session.ok()) {
    return session->Reply(ErrorResponse(http::status::bad_request,
                                        presence_session.status().message()));
  }
  if (heartbeat) {
    return upstream_->Heartbeat(user_id,
                                std::move(presence_session->session_id),
                                presence_session->idle, ReplyTo(session));
  }
  return upstream_->MarkOffline(
      user_id, std::move(presence_session->session_id), ReplyTo(session));
}

void Router::SetStatus(const std::shared_ptr<HttpSession>& session,
                       const Request& request, int64_t user_id) {
  absl::StatusOr<v1::SetStatusRequest> status =
      ParseStatusBody(request.body(), user_id);
  if (!status.ok()) {
    return session->Reply(
        ErrorResponse(http::status::bad_request, status.status().message()));
  }
  return upstream_->SetStatus(*std::move(status), ReplyTo(session));
}

void Router::Presence(const std::shared_ptr<HttpSession>& session,
                      int64_t viewer, std::vector<int64_t> users) {
  if (users.empty()) {
    return session->Reply(ErrorResponse(
        http::status::bad_request,
        "user_ids is required: send user_ids=1,5,12 (your own id for "
        "your own status)"));
  }
  return upstream_->Presence(viewer, std::move(users), ReplyTo(session));
}

void Router::OpenEventStream(const std::shared_ptr<HttpSession>& session,
                             std::vector<int64_t> users) {
  if (streams_->size() >= options_.max_event_streams) {
    return session->Reply(
        ErrorResponse(http::status::service_unavailable,
                      absl::StrCat("too many event streams (", streams_->size(),
                                   "); retry later")));
  }
  std::string headers = session->HeaderLines();
  return streams_->Open(session->TakeSocket(), std::move(headers),
                        std::move(users));
}

void Router::Handle(const std::shared_ptr<HttpSession>& session,
                    Request request) {
  const absl::string_view target = View(request.target());
  const absl::string_view path = PathOf(target);
  const absl::string_view origin = OriginOf(request);
  const bool cross_origin_allowed = AddCorsHeaders(*session, origin);

  std::optional<Route> route = FindRoute(path);
  if (!route) {
    return session->Reply(ErrorResponse(
        http::status::not_found, absl::StrCat("no such endpoint: ", path)));
  }
  session->SetRoute(route->label);
  if (IsPreflight(request)) {
    session->SetRoute("preflight");
    return session->Reply(
        PreflightResponse(*route, origin, cross_origin_allowed));
  }
  if (request.method() != route->method) {
    return session->Reply(MethodNotAllowedResponse(path, *route));
  }
  switch (route->endpoint) {
    case Endpoint::kPage:
      return session->Reply(
          AssetResponse("text/html; charset=utf-8", kIndexHtml));
    case Endpoint::kScript:
      return session->Reply(
          AssetResponse("text/javascript; charset=utf-8", kPresenceJs));
    case Endpoint::kHealth:
      return session->Reply(HealthResponse());
    default:
      break;
  }

  // The other endpoints answer a caller, with parameters.
  absl::StatusOr<Query> query = Query::Parse(target);
  if (!query.ok()) {
    return session->Reply(
        ErrorResponse(http::status::bad_request, query.status().message()));
  }
  absl::StatusOr<TokenClaims> caller = Authenticate(request, *query);
  if (!caller.ok()) {
    return session->Reply(
        ErrorResponse(http::status::unauthorized, caller.status().message()));
  }
  if (route->endpoint == Endpoint::kHeartbeat ||
      route->endpoint == Endpoint::kMarkOffline) {
    return UpdateSession(session, request, caller->user_id,
                         route->endpoint == Endpoint::kHeartbeat);
  }
  if (route->endpoint == Endpoint::kStatus) {
    return SetStatus(session, request, caller->user_id);
  }
  // Online users, presence and the event stream: of the users in user_ids.
  absl::StatusOr<std::vector<int64_t>> users =
      ParseUserIds(query->Get("user_ids").value_or(""));
  if (!users.ok()) {
    return session->Reply(
        ErrorResponse(http::status::bad_request, users.status().message()));
  }
  switch (route->endpoint) {
    case Endpoint::kOnlineUsers:
      return upstream_->OnlineUsers(*std::move(users), ReplyTo(session));
    case Endpoint::kPresence:
      return Presence(session, caller->user_id, *std::move(users));
    case Endpoint::kStream:
      return OpenEventStream(session, *std::move(users));
    default:
      return;
  }
}

}  // namespace presence::rest
