#ifndef PRESENCE_SERVICE_REQUEST_VALIDATION_H_
#define PRESENCE_SERVICE_REQUEST_VALIDATION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "presence/v1/presence.pb.h"

namespace presence {

struct RequestLimits {
  int max_ids_per_request = 10'000;
  int default_page_size = 1'000;
  int max_page_size = 10'000;
};

inline constexpr size_t kMaxSessionIdBytes = 128;

// Each returns INVALID_ARGUMENT naming the offending field, or OK.
absl::Status ValidateRequest(const v1::HeartbeatRequest& request,
                             const RequestLimits& limits);
absl::Status ValidateRequest(const v1::MarkOfflineRequest& request,
                             const RequestLimits& limits);
absl::Status ValidateRequest(const v1::ListOnlineRequest& request,
                             const RequestLimits& limits);
absl::Status ValidateRequest(const v1::GetPresenceRequest& request,
                             const RequestLimits& limits);
absl::Status ValidateRequest(const v1::WatchPresenceRequest& request,
                             const RequestLimits& limits);
// The batch as a whole (its size); items are checked one by one with the
// HeartbeatRequest overload.
absl::Status ValidateRequest(const v1::ListForeignUsersRequest& request,
                             const RequestLimits& limits);
// Each last_seen must be set and a valid Timestamp; whether it lies in the
// future is the handler's to say (it has the clock).
absl::Status ValidateRequest(const v1::ImportLastSeenRequest& request,
                             const RequestLimits& limits);
absl::Status ValidateRequest(const v1::BatchHeartbeatRequest& request,
                             const RequestLimits& limits);
// Whether the end lies in the future is the registry's to say (it has the
// clock).
absl::Status ValidateRequest(const v1::SetStatusRequest& request,
                             const RequestLimits& limits);

// The page size a request's page_size asks for, after defaults and the cap.
int EffectivePageSize(int32_t page_size, const RequestLimits& limits);
// The same for a ListOnline or ListForeignUsers request.
template <typename PagedRequest>
int EffectivePageSize(const PagedRequest& request,
                      const RequestLimits& limits) {
  return EffectivePageSize(request.page_size(), limits);
}

// ListOnline's cursor: the last user id of the previous page. Tokens are
// opaque to clients; an empty token is the first page (cursor 0).
std::string EncodePageToken(int64_t after_user_id);
absl::StatusOr<int64_t> DecodePageToken(absl::string_view token);

}  // namespace presence

#endif  // PRESENCE_SERVICE_REQUEST_VALIDATION_H_
