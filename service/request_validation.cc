#include "service/request_validation.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"
#include "service/custom_status_text.h"
#include "service/status_macros.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::string_view kPageTokenPrefix = "after:";

// Within the range protobuf's Timestamp allows (TimeUtil's bounds).
bool IsValidTimestamp(const google::protobuf::Timestamp& t) {
  return t.nanos() >= 0 && t.nanos() <= 999'999'999 &&
         t.seconds() >= TimeUtil::kTimestampMinSeconds &&
         t.seconds() <= TimeUtil::kTimestampMaxSeconds;
}

absl::Status ValidateUserId(int64_t user_id, absl::string_view field) {
  if (user_id <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be > 0, got ", user_id));
  }
  return absl::OkStatus();
}

absl::Status ValidateSessionId(absl::string_view session_id) {
  if (session_id.size() > kMaxSessionIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_id must be at most ", kMaxSessionIdBytes,
                     " bytes, got ", session_id.size()));
  }
  for (size_t i = 0; i < session_id.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(session_id[i]);
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat("session_id must be printable ASCII; byte ", i, " is 0x",
                       absl::Hex(c, absl::kZeroPad2)));
    }
  }
  return absl::OkStatus();
}

// ListOnline's and ListForeignUsers' paging fields.
absl::Status ValidatePage(int32_t page_size, absl::string_view page_token,
                          const RequestLimits& limits) {
  if (page_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be >= 0 (0 means ",
                     limits.default_page_size, "), got ", page_size));
  }
  return DecodePageToken(page_token).status();
}

template <typename Ids>
absl::Status ValidateUserIds(const Ids& ids, const RequestLimits& limits) {
  if (ids.size() > limits.max_ids_per_request) {
    return absl::InvalidArgumentError(
        absl::StrCat("user_ids has ", ids.size(), " ids; at most ",
                     limits.max_ids_per_request, " per request"));
  }
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("user_ids[", i, "] must be > 0, got ", ids[i]));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequest(const v1::HeartbeatRequest& request,
                             const RequestLimits&) {
  PRESENCE_RETURN_IF_ERROR(ValidateUserId(request.user_id(), "user_id"));
  return ValidateSessionId(request.session_id());
}

absl::Status ValidateRequest(const v1::MarkOfflineRequest& request,
                             const RequestLimits&) {
  PRESENCE_RETURN_IF_ERROR(ValidateUserId(request.user_id(), "user_id"));
  return ValidateSessionId(request.session_id());
}

absl::Status ValidateRequest(const v1::ListOnlineRequest& request,
                             const RequestLimits& limits) {
  PRESENCE_RETURN_IF_ERROR(
      ValidatePage(request.page_size(), request.page_token(), limits));
  return ValidateUserIds(request.user_ids(), limits);
}

absl::Status ValidateRequest(const v1::GetPresenceRequest& request,
                             const RequestLimits& limits) {
  if (request.viewer_user_id() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("viewer_user_id must be > 0 (or 0: no viewer), got ",
                     request.viewer_user_id()));
  }
  return ValidateUserIds(request.user_ids(), limits);
}

namespace {

absl::Status ValidateTimestamp(const google::protobuf::Timestamp& t,
                               absl::string_view field) {
  if (!IsValidTimestamp(t)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be a valid Timestamp"));
  }
  return absl::OkStatus();
}

// An end given as a duration: positive, and within a year (a status set
// "for" longer is meant until changed: leave the end out).
absl::Status ValidateStatusDuration(const google::protobuf::Duration& d,
                                    absl::string_view field) {
  constexpr int64_t kMaxSeconds = 366 * 24 * 3600;
  if (d.seconds() < 0 || d.nanos() < 0 ||
      (d.seconds() == 0 && d.nanos() == 0) || d.nanos() > 999'999'999 ||
      d.seconds() > kMaxSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be positive and at most 366 days, got ",
                     TimeUtil::ToString(d)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRequest(const v1::SetStatusRequest& request,
                             const RequestLimits&) {
  PRESENCE_RETURN_IF_ERROR(ValidateUserId(request.user_id(), "user_id"));
  if (!v1::Availability_IsValid(request.availability())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "availability must be AVAILABILITY_AUTO, AVAILABILITY_DND or "
        "AVAILABILITY_INVISIBLE (or unset), got ",
        request.availability()));
  }
  const bool has_end = request.availability_end_case() !=
                       v1::SetStatusRequest::AVAILABILITY_END_NOT_SET;
  if (has_end && request.availability() != v1::AVAILABILITY_DND &&
      request.availability() != v1::AVAILABILITY_INVISIBLE) {
    return absl::InvalidArgumentError(
        "availability_until and availability_for go with availability DND "
        "or INVISIBLE: AUTO has no end");
  }
  if (request.has_availability_until()) {
    PRESENCE_RETURN_IF_ERROR(
        ValidateTimestamp(request.availability_until(), "availability_until"));
  }
  if (request.has_availability_for()) {
    PRESENCE_RETURN_IF_ERROR(
        ValidateStatusDuration(request.availability_for(), "availability_for"));
  }
  if (request.has_custom_status() && request.clear_custom_status()) {
    return absl::InvalidArgumentError(
        "custom_status and clear_custom_status exclude each other: set one");
  }
  if (request.has_custom_status_for() && !request.has_custom_status()) {
    return absl::InvalidArgumentError(
        "custom_status_for needs a custom_status to expire");
  }
  if (request.has_custom_status()) {
    const v1::CustomStatus& custom = request.custom_status();
    if (custom.text().empty() && custom.emoji().empty()) {
      return absl::InvalidArgumentError(
          "custom_status needs a text or an emoji (to remove it, set "
          "clear_custom_status)");
    }
    PRESENCE_RETURN_IF_ERROR(
        ValidateStatusText(custom.text(), "custom_status.text"));
    if (!custom.emoji().empty()) {
      PRESENCE_RETURN_IF_ERROR(
          ValidateEmoji(custom.emoji(), "custom_status.emoji"));
    }
    if (custom.has_expires_at() && request.has_custom_status_for()) {
      return absl::InvalidArgumentError(
          "custom_status.expires_at and custom_status_for exclude each "
          "other: set one");
    }
    if (custom.has_expires_at()) {
      PRESENCE_RETURN_IF_ERROR(
          ValidateTimestamp(custom.expires_at(), "custom_status.expires_at"));
    }
    if (request.has_custom_status_for()) {
      PRESENCE_RETURN_IF_ERROR(ValidateStatusDuration(
          request.custom_status_for(), "custom_status_for"));
    }
  }
  if (request.availability() == v1::AVAILABILITY_UNSPECIFIED &&
      !request.has_custom_status() && !request.clear_custom_status()) {
    return absl::InvalidArgumentError(
        "the request sets nothing: give an availability, a custom_status or "
        "clear_custom_status");
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::WatchPresenceRequest& request,
                             const RequestLimits& limits) {
  if (request.resume_after() > 0 && request.epoch().empty()) {
    return absl::InvalidArgumentError(
        "epoch must be set with resume_after: pass the epoch of the stream "
        "that sent that sequence");
  }
  if (request.epoch().size() > 64) {
    return absl::InvalidArgumentError(
        "epoch is not an epoch of presenced (at most 64 bytes)");
  }
  return ValidateUserIds(request.user_ids(), limits);
}

absl::Status ValidateRequest(const v1::ListForeignUsersRequest& request,
                             const RequestLimits& limits) {
  return ValidatePage(request.page_size(), request.page_token(), limits);
}

absl::Status ValidateRequest(const v1::ImportLastSeenRequest& request,
                             const RequestLimits& limits) {
  if (request.users_size() > limits.max_ids_per_request) {
    return absl::InvalidArgumentError(
        absl::StrCat("users has ", request.users_size(), " items; at most ",
                     limits.max_ids_per_request, " per request"));
  }
  for (int i = 0; i < request.users_size(); ++i) {
    const v1::UserLastSeen& user = request.users(i);
    PRESENCE_RETURN_IF_ERROR(
        ValidateUserId(user.user_id(), absl::StrCat("users[", i, "].user_id")));
    if (!user.has_last_seen() || !IsValidTimestamp(user.last_seen())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "users[", i, "].last_seen must be set, a valid Timestamp"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::BatchHeartbeatRequest& request,
                             const RequestLimits& limits) {
  if (request.heartbeats_size() > limits.max_ids_per_request) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeats has ", request.heartbeats_size(), " items; at most ",
        limits.max_ids_per_request, " per request"));
  }
  return absl::OkStatus();
}

int EffectivePageSize(int32_t page_size, const RequestLimits& limits) {
  if (page_size <= 0) return limits.default_page_size;
  return std::min(page_size, limits.max_page_size);
}

std::string EncodePageToken(int64_t after_user_id) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(kPageTokenPrefix, after_user_id));
}

absl::StatusOr<int64_t> DecodePageToken(absl::string_view token) {
  if (token.empty()) return 0;
  std::string raw;
  int64_t after = 0;
  bool ok = absl::WebSafeBase64Unescape(token, &raw);
  absl::string_view cursor = raw;
  ok = ok && absl::ConsumePrefix(&cursor, kPageTokenPrefix) &&
       absl::SimpleAtoi(cursor, &after) && after > 0;
  if (!ok) {
    return absl::InvalidArgumentError(
        "page_token is not a token from a previous ListOnline response; "
        "pass next_page_token unchanged, or empty for the first page");
  }
  return after;
}

}  // namespace presence
