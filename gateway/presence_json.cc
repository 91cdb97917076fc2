#include "gateway/presence_json.h"

#include "absl/strings/str_cat.h"
#include "gateway/json.h"
#include "google/protobuf/util/time_util.h"

namespace presence::rest {

using google::protobuf::Struct;
using google::protobuf::Value;
using google::protobuf::util::TimeUtil;

const char* StatusName(v1::Status status) {
  switch (status) {
    case v1::STATUS_AWAY:
      return "away";
    case v1::STATUS_DND:
      return "dnd";
    case v1::STATUS_OFFLINE:
    case v1::STATUS_UNSPECIFIED:
      return "offline";
    default:
      return "online";
  }
}

bool IsOnline(v1::Status status) {
  return status != v1::STATUS_OFFLINE && status != v1::STATUS_UNSPECIFIED;
}

const char* AvailabilityName(v1::Availability availability) {
  switch (availability) {
    case v1::AVAILABILITY_DND:
      return "dnd";
    case v1::AVAILABILITY_INVISIBLE:
      return "invisible";
    default:
      return "auto";
  }
}

Value TimeValue(bool has, const google::protobuf::Timestamp& time) {
  Value value;
  if (has) {
    value.set_string_value(TimeUtil::ToString(time));
  } else {
    value.set_null_value(google::protobuf::NULL_VALUE);
  }
  return value;
}

Value CustomStatusValue(bool has, const v1::CustomStatus& status) {
  Value value;
  if (!has) {
    value.set_null_value(google::protobuf::NULL_VALUE);
    return value;
  }
  auto& fields = *value.mutable_struct_value()->mutable_fields();
  fields["text"].set_string_value(status.text());
  fields["emoji"].set_string_value(status.emoji());
  fields["expires_at"] =
      TimeValue(status.has_expires_at(), status.expires_at());
  return value;
}

Struct UserPresenceFields(const v1::UserPresence& presence) {
  Struct user;
  auto& fields = *user.mutable_fields();
  fields["status"].set_string_value(StatusName(presence.status()));
  fields["last_seen"] =
      TimeValue(presence.has_last_seen(), presence.last_seen());
  fields["availability"].set_string_value(
      AvailabilityName(presence.availability()));
  fields["availability_until"] = TimeValue(presence.has_availability_until(),
                                           presence.availability_until());
  fields["custom_status"] =
      CustomStatusValue(presence.has_custom_status(), presence.custom_status());
  return user;
}

std::string UserPresenceJson(const v1::UserPresence& presence) {
  return JsonObject(UserPresenceFields(presence),
                    {{"user_id", absl::StrCat(presence.user_id())}});
}

}  // namespace presence::rest
