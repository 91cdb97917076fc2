#include "gateway/status_body.h"

#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "service/status_macros.h"

namespace presence::rest {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using google::protobuf::util::TimeUtil;

constexpr char kExample[] =
    R"(e.g. {"availability": "dnd", "for": "90m"} or )"
    R"({"text": "In a meeting", "emoji": ":calendar:", "expires_in": "1h"})";

constexpr const char* kMembers[] = {"availability", "until", "for",
                                    "text",         "emoji", "expires_at",
                                    "expires_in",   "clear", nullptr};

bool Known(const std::string& name) {
  for (const char* const* member = kMembers; *member != nullptr; ++member) {
    if (name == *member) return true;
  }
  return false;
}

absl::Status Invalid(absl::string_view name, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", problem));
}

// The member `name`, unless absent or null.
const Value* Member(const Struct& body, const char* name) {
  auto it = body.fields().find(name);
  if (it == body.fields().end() ||
      it->second.kind_case() == Value::kNullValue) {
    return nullptr;
  }
  return &it->second;
}

absl::StatusOr<std::string> StringMember(const Value& value,
                                         absl::string_view name) {
  if (value.kind_case() != Value::kStringValue) {
    return Invalid(name, "must be a string");
  }
  return value.string_value();
}

absl::StatusOr<google::protobuf::Timestamp> TimeMember(const Value& value,
                                                       absl::string_view name) {
  PRESENCE_ASSIGN_OR_RETURN(std::string text, StringMember(value, name));
  google::protobuf::Timestamp time;
  if (!TimeUtil::FromString(text, &time)) {
    return Invalid(name, absl::StrCat("'", absl::CHexEscape(text),
                                      "' is not an RFC 3339 time such as "
                                      "2026-11-28T17:00:00Z or "
                                      "2026-11-28T18:00:00+01:00"));
  }
  return time;
}

// A number of seconds, or a string such as "90m", "2h" or "1h30m".
absl::StatusOr<google::protobuf::Duration> DurationMember(
    const Value& value, absl::string_view name) {
  absl::Duration duration;
  if (value.kind_case() == Value::kNumberValue) {
    if (!std::isfinite(value.number_value())) {
      return Invalid(name, "must be a finite number of seconds");
    }
    duration = absl::Seconds(value.number_value());
  } else if (value.kind_case() == Value::kStringValue) {
    if (!absl::ParseDuration(value.string_value(), &duration)) {
      return Invalid(
          name, absl::StrCat("'", absl::CHexEscape(value.string_value()),
                             "' is not a duration: send a number of seconds "
                             "or a string such as \"90m\", \"2h\" or "
                             "\"1h30m\" (units h, m, s, ms)"));
    }
  } else {
    return Invalid(name,
                   "must be a number of seconds or a string such as \"90m\"");
  }
  if (duration <= absl::ZeroDuration()) {
    return Invalid(name, "must be positive");
  }
  if (duration > absl::Seconds(TimeUtil::kDurationMaxSeconds)) {
    return Invalid(name, "is too long (at most 10,000 years)");
  }
  absl::Duration rest;
  const int64_t seconds = absl::IDivDuration(duration, absl::Seconds(1), &rest);
  google::protobuf::Duration proto;
  proto.set_seconds(seconds);
  proto.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(rest)));
  return proto;
}

// `body` as a JSON object of known members only.
absl::StatusOr<Struct> ParseObject(absl::string_view body) {
  Struct object;
  if (absl::StripAsciiWhitespace(body).empty() ||
      !google::protobuf::util::JsonStringToMessage(std::string(body), &object)
           .ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("body must be a JSON object, ", kExample));
  }
  for (const auto& [name, value] : object.fields()) {
    if (!Known(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown member '", absl::CHexEscape(name),
          "'; send availability, until or for, text, emoji, expires_at or "
          "expires_in, or clear"));
    }
  }
  return object;
}

absl::StatusOr<v1::Availability> AvailabilityMember(const Value& value) {
  PRESENCE_ASSIGN_OR_RETURN(std::string name,
                            StringMember(value, "availability"));
  if (name == "auto") return v1::AVAILABILITY_AUTO;
  if (name == "dnd") return v1::AVAILABILITY_DND;
  if (name == "invisible") return v1::AVAILABILITY_INVISIBLE;
  return Invalid("availability", absl::StrCat("'", absl::CHexEscape(name),
                                              "' is not one of \"auto\", "
                                              "\"dnd\", \"invisible\""));
}

// "availability", and when dnd or invisible ends: "until" or "for".
absl::Status ReadAvailability(const Struct& object,
                              v1::SetStatusRequest* request) {
  if (const Value* value = Member(object, "availability")) {
    PRESENCE_ASSIGN_OR_RETURN(const v1::Availability availability,
                              AvailabilityMember(*value));
    request->set_availability(availability);
  }
  const Value* until = Member(object, "until");
  const Value* for_duration = Member(object, "for");
  if (until != nullptr && for_duration != nullptr) {
    return absl::InvalidArgumentError(
        "send either until (a time) or for (a duration), not both");
  }
  if ((until != nullptr || for_duration != nullptr) &&
      request->availability() != v1::AVAILABILITY_DND &&
      request->availability() != v1::AVAILABILITY_INVISIBLE) {
    return absl::InvalidArgumentError(
        "until and for say when \"dnd\" or \"invisible\" ends: send them with "
        "availability \"dnd\" or \"invisible\"");
  }
  if (until != nullptr) {
    PRESENCE_ASSIGN_OR_RETURN(*request->mutable_availability_until(),
                              TimeMember(*until, "until"));
  }
  if (for_duration != nullptr) {
    PRESENCE_ASSIGN_OR_RETURN(*request->mutable_availability_for(),
                              DurationMember(*for_duration, "for"));
  }
  return absl::OkStatus();
}

// The members of the custom status, each null when absent.
struct CustomStatusMembers {
  const Value* text;
  const Value* emoji;
  const Value* expires_at;
  const Value* expires_in;
};

// "clear", false when absent.
absl::StatusOr<bool> ClearMember(const Struct& object) {
  const Value* value = Member(object, "clear");
  if (value == nullptr) return false;
  if (value->kind_case() != Value::kBoolValue) {
    return Invalid("clear", "must be true or false");
  }
  return value->bool_value();
}

// A custom status needs a text or an emoji; when it expires is up to
// expires_at or expires_in.
absl::Status ReadCustomStatus(const CustomStatusMembers& members,
                              v1::SetStatusRequest* request) {
  v1::CustomStatus& status = *request->mutable_custom_status();
  if (members.text != nullptr) {
    PRESENCE_ASSIGN_OR_RETURN(*status.mutable_text(),
                              StringMember(*members.text, "text"));
  }
  if (members.emoji != nullptr) {
    PRESENCE_ASSIGN_OR_RETURN(*status.mutable_emoji(),
                              StringMember(*members.emoji, "emoji"));
  }
  if (status.text().empty() && status.emoji().empty()) {
    return absl::InvalidArgumentError(
        "the custom status needs a text or an emoji; to remove it send "
        "{\"clear\": true}");
  }
  if (members.expires_at != nullptr) {
    PRESENCE_ASSIGN_OR_RETURN(*status.mutable_expires_at(),
                              TimeMember(*members.expires_at, "expires_at"));
  }
  if (members.expires_in != nullptr) {
    PRESENCE_ASSIGN_OR_RETURN(
        *request->mutable_custom_status_for(),
        DurationMember(*members.expires_in, "expires_in"));
  }
  return absl::OkStatus();
}

// "text", "emoji" and when they expire, or "clear". Returns whether the
// body sets or clears the custom status.
absl::StatusOr<bool> ReadCustomStatusOrClear(const Struct& object,
                                             v1::SetStatusRequest* request) {
  const CustomStatusMembers members{
      Member(object, "text"), Member(object, "emoji"),
      Member(object, "expires_at"), Member(object, "expires_in")};
  PRESENCE_ASSIGN_OR_RETURN(const bool clear, ClearMember(object));
  const bool custom = members.text != nullptr || members.emoji != nullptr;
  if (clear && custom) {
    return absl::InvalidArgumentError(
        "send either clear (to remove the custom status) or text and emoji "
        "(to replace it), not both");
  }
  if ((members.expires_at != nullptr || members.expires_in != nullptr) &&
      !custom) {
    return absl::InvalidArgumentError(
        "expires_at and expires_in say when a custom status clears itself: "
        "send them with text and/or emoji");
  }
  if (members.expires_at != nullptr && members.expires_in != nullptr) {
    return absl::InvalidArgumentError(
        "send either expires_at (a time) or expires_in (a duration), not "
        "both");
  }
  if (custom) PRESENCE_RETURN_IF_ERROR(ReadCustomStatus(members, request));
  request->set_clear_custom_status(clear);
  return custom || clear;
}

}  // namespace

absl::StatusOr<v1::SetStatusRequest> ParseStatusBody(absl::string_view body,
                                                     int64_t user_id) {
  PRESENCE_ASSIGN_OR_RETURN(const Struct object, ParseObject(body));
  v1::SetStatusRequest request;
  request.set_user_id(user_id);
  PRESENCE_RETURN_IF_ERROR(ReadAvailability(object, &request));
  PRESENCE_ASSIGN_OR_RETURN(const bool custom_status,
                            ReadCustomStatusOrClear(object, &request));
  if (request.availability() == v1::AVAILABILITY_UNSPECIFIED &&
      !custom_status) {
    return absl::InvalidArgumentError(
        absl::StrCat("nothing to set: send availability, a custom status "
                     "(text, emoji) or clear, ",
                     kExample));
  }
  return request;
}

}  // namespace presence::rest
