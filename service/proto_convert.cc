#include "service/proto_convert.h"

#include "service/proto_time.h"

namespace presence {
namespace {

v1::Status StatusToProto(PublicStatus status) {
  switch (status) {
    case PublicStatus::kOnline:
      return v1::STATUS_ONLINE;
    case PublicStatus::kAway:
      return v1::STATUS_AWAY;
    case PublicStatus::kDnd:
      return v1::STATUS_DND;
    case PublicStatus::kOffline:
      break;
  }
  return v1::STATUS_OFFLINE;
}

v1::Availability AvailabilityToProto(Availability availability) {
  switch (availability) {
    case Availability::kDnd:
      return v1::AVAILABILITY_DND;
    case Availability::kInvisible:
      return v1::AVAILABILITY_INVISIBLE;
    case Availability::kAuto:
      break;
  }
  return v1::AVAILABILITY_AUTO;
}

// `rich`: the stream asked for rich_status. Otherwise only the reasons
// clients before rich presence know: an online/offline transition caused by
// a status (going or ceasing to be invisible) reads as a heartbeat or a
// logout.
v1::Reason ReasonToProto(const PresenceEvent& event, bool rich) {
  switch (event.reason) {
    case PresenceEvent::Reason::kHeartbeat:
      return v1::REASON_HEARTBEAT;
    case PresenceEvent::Reason::kMarkOffline:
      return v1::REASON_MARK_OFFLINE;
    case PresenceEvent::Reason::kExpired:
      return v1::REASON_EXPIRED;
    case PresenceEvent::Reason::kActivity:
    case PresenceEvent::Reason::kStatusSet:
    case PresenceEvent::Reason::kStatusExpired:
      break;
  }
  if (!rich) {
    return event.online ? v1::REASON_HEARTBEAT : v1::REASON_MARK_OFFLINE;
  }
  switch (event.reason) {
    case PresenceEvent::Reason::kActivity:
      return v1::REASON_ACTIVITY;
    case PresenceEvent::Reason::kStatusSet:
      return v1::REASON_STATUS_SET;
    default:
      return v1::REASON_STATUS_EXPIRED;
  }
}

void FillCustomStatus(const CustomStatus& custom, v1::CustomStatus* out) {
  out->set_text(custom.text);
  out->set_emoji(custom.emoji);
  if (custom.expires_at != absl::InfiniteFuture()) {
    *out->mutable_expires_at() = ToProto(custom.expires_at);
  }
}

}  // namespace

void FillPresence(const UserPresenceInfo& info, bool rich,
                  v1::UserPresence* out) {
  out->set_user_id(info.user_id);
  out->set_status(rich          ? StatusToProto(info.status)
                  : info.online ? v1::STATUS_ONLINE
                                : v1::STATUS_OFFLINE);
  if (info.last_seen != absl::InfinitePast()) {
    *out->mutable_last_seen() = ToProto(info.last_seen);
  }
  out->set_live_sessions(info.live_sessions);
  if (info.online) *out->mutable_online_until() = ToProto(info.online_until);
  out->set_availability(AvailabilityToProto(info.availability));
  if (info.availability_until != absl::InfiniteFuture()) {
    *out->mutable_availability_until() = ToProto(info.availability_until);
  }
  if (info.custom.has_value()) {
    FillCustomStatus(*info.custom, out->mutable_custom_status());
  }
}

void FillChange(const SequencedEvent& e, bool rich,
                v1::PresenceChange* change) {
  change->set_user_id(e.event.user_id);
  change->set_status(rich             ? StatusToProto(e.event.status)
                     : e.event.online ? v1::STATUS_ONLINE
                                      : v1::STATUS_OFFLINE);
  *change->mutable_at() = ToProto(e.event.at);
  change->set_reason(ReasonToProto(e.event, rich));
  change->set_sequence(e.sequence);
  if (!rich) return;
  if (e.event.custom != nullptr) {
    FillCustomStatus(*e.event.custom, change->mutable_custom_status());
  }
  if (e.event.availability_until != absl::InfiniteFuture()) {
    *change->mutable_availability_until() = ToProto(e.event.availability_until);
  }
}

StatusUpdate ToStatusUpdate(const v1::SetStatusRequest& request) {
  StatusUpdate update;
  switch (request.availability()) {
    case v1::AVAILABILITY_AUTO:
      update.availability = Availability::kAuto;
      break;
    case v1::AVAILABILITY_DND:
      update.availability = Availability::kDnd;
      break;
    case v1::AVAILABILITY_INVISIBLE:
      update.availability = Availability::kInvisible;
      break;
    default:
      break;  // unchanged
  }
  if (request.has_availability_until()) {
    update.availability_until = FromProto(request.availability_until());
  } else if (request.has_availability_for()) {
    update.availability_for = FromProto(request.availability_for());
  }
  if (request.has_custom_status()) {
    const v1::CustomStatus& custom = request.custom_status();
    update.custom_action = StatusUpdate::Custom::kReplace;
    update.custom.text = custom.text();
    update.custom.emoji = custom.emoji();
    if (custom.has_expires_at()) {
      update.custom.expires_at = FromProto(custom.expires_at());
    } else if (request.has_custom_status_for()) {
      update.custom_for = FromProto(request.custom_status_for());
    }
  } else if (request.clear_custom_status()) {
    update.custom_action = StatusUpdate::Custom::kClear;
  }
  return update;
}

}  // namespace presence
