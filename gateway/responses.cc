#include "gateway/responses.h"

#include <utility>

#include "gateway/json.h"
#include "google/protobuf/struct.pb.h"

namespace presence::rest {

Response JsonResponse(http::status status, std::string json) {
  Response response{status, 11};
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  response.body() = std::move(json);
  return response;
}

Response ErrorResponse(http::status status, absl::string_view message) {
  google::protobuf::Struct body;
  (*body.mutable_fields())["error"].set_string_value(std::string(message));
  Response response = JsonResponse(status, JsonObject(body));
  if (status == http::status::unauthorized) {
    response.set(http::field::www_authenticate, "Bearer");
  }
  return response;
}

Response AssetResponse(const char* content_type, absl::string_view content) {
  Response response{http::status::ok, 11};
  response.set(http::field::content_type, content_type);
  response.body() = std::string(content);
  return response;
}

}  // namespace presence::rest
