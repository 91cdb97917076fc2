// presence-rest's routes: which endpoint a request is for, its CORS, its
// caller (the JWT) and its parameters; then the answer, from presenced
// (Upstream), an event stream, or the server itself.
#ifndef PRESENCE_GATEWAY_ROUTER_H_
#define PRESENCE_GATEWAY_ROUTER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/cors.h"
#include "gateway/event_stream.h"
#include "gateway/http_session.h"
#include "gateway/jwt.h"
#include "gateway/query.h"
#include "gateway/upstream.h"

namespace presence::rest {

struct RouterOptions {
  // The HS256 key of the callers' JWTs.
  std::string jwt_secret;
  CorsPolicy cors;
  // The most event streams at once; more are answered 503.
  size_t max_event_streams = 100'000;
};

// I/O thread only.
class Router : public RequestHandler {
 public:
  // `upstream` and `streams` must outlive this.
  Router(RouterOptions options, Upstream* upstream, EventStreams* streams)
      : options_(std::move(options)), upstream_(upstream), streams_(streams) {}

  void Handle(const std::shared_ptr<HttpSession>& session,
              Request request) override;

 private:
  // Adds the CORS headers that every answer carries; true if `origin` may
  // call from the browser.
  bool AddCorsHeaders(HttpSession& session, absl::string_view origin) const;
  absl::StatusOr<TokenClaims> Authenticate(const Request& request,
                                           const Query& query) const;
  Response HealthResponse() const;

  // The endpoints of a caller, `user_id` (from the JWT); each replies to
  // `session`, or hands it to an event stream.
  void UpdateSession(const std::shared_ptr<HttpSession>& session,
                     const Request& request, int64_t user_id, bool heartbeat);
  void SetStatus(const std::shared_ptr<HttpSession>& session,
                 const Request& request, int64_t user_id);
  void Presence(const std::shared_ptr<HttpSession>& session, int64_t viewer,
                std::vector<int64_t> users);
  void OpenEventStream(const std::shared_ptr<HttpSession>& session,
                       std::vector<int64_t> users);

  const RouterOptions options_;
  Upstream* const upstream_;
  EventStreams* const streams_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_ROUTER_H_
