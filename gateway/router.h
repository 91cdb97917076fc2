// presence-rest's routes: which endpoint a request is for, its CORS, its
// caller (the JWT) and its parameters; then the answer, from presenced
// (Upstream), an event stream, or the server itself.
#ifndef PRESENCE_GATEWAY_ROUTER_H_
#define PRESENCE_GATEWAY_ROUTER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
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
  absl::StatusOr<TokenClaims> Authenticate(const Request& request,
                                           const Query& query) const;

  const RouterOptions options_;
  Upstream* const upstream_;
  EventStreams* const streams_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_ROUTER_H_
