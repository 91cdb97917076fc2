// The HTTP types of presence-rest and the answers every role builds: JSON
// bodies, `{"error": "..."}` errors, the compiled-in assets.
#ifndef PRESENCE_GATEWAY_RESPONSES_H_
#define PRESENCE_GATEWAY_RESPONSES_H_

#include <string>

#include "absl/strings/string_view.h"
#include "boost/beast/http.hpp"

namespace presence::rest {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// `json`, already serialised, as application/json, never cached.
Response JsonResponse(http::status status, std::string json);

// `{"error": message}`; a 401 also says `WWW-Authenticate: Bearer`.
Response ErrorResponse(http::status status, absl::string_view message);

Response AssetResponse(const char* content_type, absl::string_view content);

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_RESPONSES_H_
