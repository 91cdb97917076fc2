#include "gateway/fanout.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gateway/json.h"
#include "gateway/presence_json.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/time_util.h"

namespace presence::rest {
namespace {

using google::protobuf::Struct;
using google::protobuf::util::TimeUtil;

std::string Frame(absl::string_view event, const std::string& json) {
  return absl::StrCat("event: ", event, "\ndata: ", json, "\n\n");
}

const char* ReasonName(v1::Reason reason) {
  switch (reason) {
    case v1::REASON_HEARTBEAT:
      return "heartbeat";
    case v1::REASON_MARK_OFFLINE:
      return "mark_offline";
    case v1::REASON_EXPIRED:
      return "expired";
    case v1::REASON_ACTIVITY:
      return "activity";
    case v1::REASON_STATUS_SET:
      return "status_set";
    case v1::REASON_STATUS_EXPIRED:
      return "status_expired";
    default:
      return "unspecified";
  }
}

// A change's reason as presenced's classic streams give it: the pages
// built before rich presence know only these three.
const char* ClassicReasonName(const v1::PresenceChange& change) {
  switch (change.reason()) {
    case v1::REASON_HEARTBEAT:
    case v1::REASON_MARK_OFFLINE:
    case v1::REASON_EXPIRED:
      return ReasonName(change.reason());
    default:
      return IsOnline(change.status()) ? "heartbeat" : "mark_offline";
  }
}

// A user's entry in a snapshot's `users`: {"user_id":42,"status":"away",
// "custom_status":...,"availability_until":...}. `status` is an online one.
std::string StatusEntry(int64_t user_id, v1::Status status,
                        google::protobuf::Value custom_status,
                        google::protobuf::Value availability_until) {
  Struct entry;
  auto& fields = *entry.mutable_fields();
  fields["status"].set_string_value(StatusName(status));
  fields["custom_status"] = std::move(custom_status);
  fields["availability_until"] = std::move(availability_until);
  return JsonObject(entry, {{"user_id", absl::StrCat(user_id)}});
}

}  // namespace

std::string ChangeFrame(const v1::PresenceChange& change) {
  Struct data;
  auto& fields = *data.mutable_fields();
  fields["status"].set_string_value(IsOnline(change.status()) ? "online"
                                                              : "offline");
  fields["reason"].set_string_value(ClassicReasonName(change));
  fields["at"].set_string_value(TimeUtil::ToString(change.at()));
  // Ids as numbers, as browsers expect them (the classic API's
  // {"online_users": [1, 5, 12]}), and exact.
  return Frame("change",
               JsonObject(data, {{"user_id", absl::StrCat(change.user_id())}}));
}

std::string StatusFrame(const v1::PresenceChange& change) {
  Struct data;
  auto& fields = *data.mutable_fields();
  fields["status"].set_string_value(StatusName(change.status()));
  fields["reason"].set_string_value(ReasonName(change.reason()));
  fields["at"].set_string_value(TimeUtil::ToString(change.at()));
  fields["custom_status"] =
      CustomStatusValue(change.has_custom_status(), change.custom_status());
  fields["availability_until"] =
      TimeValue(change.has_availability_until(), change.availability_until());
  return Frame("status",
               JsonObject(data, {{"user_id", absl::StrCat(change.user_id())}}));
}

std::string StaleFrame(const std::string& reason) {
  Struct data;
  (*data.mutable_fields())["reason"].set_string_value(reason);
  return Frame("stale", JsonObject(data));
}

void PresenceFanout::ApplySnapshot(const v1::Snapshot& snapshot) {
  // With rich_status, `users` holds each online user's presence, in the
  // order of online_users; without (an older presenced), nothing: everyone
  // listed is plainly online.
  absl::flat_hash_map<int64_t, const v1::UserPresence*> presence;
  for (const v1::UserPresence& user : snapshot.users()) {
    presence[user.user_id()] = &user;
  }
  online_.clear();
  for (int64_t user_id : snapshot.online_users()) {
    auto it = presence.find(user_id);
    if (it == presence.end()) {
      online_[user_id] =
          StatusEntry(user_id, v1::STATUS_ONLINE, CustomStatusValue(false, {}),
                      TimeValue(false, google::protobuf::Timestamp()));
      continue;
    }
    const v1::UserPresence& user = *it->second;
    online_[user_id] = StatusEntry(
        user_id, IsOnline(user.status()) ? user.status() : v1::STATUS_ONLINE,
        CustomStatusValue(user.has_custom_status(), user.custom_status()),
        TimeValue(user.has_availability_until(), user.availability_until()));
  }
  server_time_ = TimeUtil::ToString(snapshot.server_time());
  ready_ = true;
  stale_frame_ = nullptr;
  everyone_snapshot_ = nullptr;
  for (const auto& [sink, users] : filters_) {
    sink->Send(SnapshotFrame(users));
  }
}

void PresenceFanout::ApplyChange(const v1::PresenceChange& change) {
  const int64_t user_id = change.user_id();
  const bool was_online = online_.contains(user_id);
  const bool online = IsOnline(change.status());
  if (online) {
    online_[user_id] = StatusEntry(
        user_id, change.status(),
        CustomStatusValue(change.has_custom_status(), change.custom_status()),
        TimeValue(change.has_availability_until(),
                  change.availability_until()));
  } else {
    online_.erase(user_id);
  }
  // The mirror is now as of this change: later snapshots say so.
  server_time_ = TimeUtil::ToString(change.at());
  everyone_snapshot_ = nullptr;
  if (!ready_) return;  // the first snapshot will carry it
  // Offline to offline (say, an invisible user's custom status): nothing
  // others see.
  if (!was_online && !online) return;
  if (everyone_.empty() && !by_user_.contains(user_id)) return;  // unwatched
  // One frame for both events: a browser's queue counts transitions, as
  // before there were `status` events.
  std::string events;
  if (was_online != online) events = ChangeFrame(change);
  events += StatusFrame(change);
  Send(user_id, std::make_shared<const std::string>(std::move(events)));
}

void PresenceFanout::Send(int64_t user, const SseFrame& frame) {
  for (SseSink* sink : everyone_) sink->Send(frame);
  auto watchers = by_user_.find(user);
  if (watchers == by_user_.end()) return;
  for (SseSink* sink : watchers->second) sink->Send(frame);
}

void PresenceFanout::MarkStale(const std::string& reason) {
  stale_frame_ = std::make_shared<const std::string>(StaleFrame(reason));
  Broadcast(stale_frame_);
}

void PresenceFanout::Subscribe(SseSink* sink, std::vector<int64_t> users) {
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  if (users.empty()) {
    everyone_.insert(sink);
  } else {
    for (int64_t user : users) by_user_[user].push_back(sink);
  }
  auto [it, inserted] = filters_.emplace(sink, std::move(users));
  if (ready_) sink->Send(SnapshotFrame(it->second));
  if (stale_frame_ != nullptr) sink->Send(stale_frame_);
}

void PresenceFanout::Unsubscribe(SseSink* sink) {
  auto it = filters_.find(sink);
  if (it == filters_.end()) return;
  everyone_.erase(sink);
  for (int64_t user : it->second) {
    auto watchers = by_user_.find(user);
    std::vector<SseSink*>& sinks = watchers->second;
    sinks.erase(std::find(sinks.begin(), sinks.end(), sink));
    if (sinks.empty()) by_user_.erase(watchers);
  }
  filters_.erase(it);
}

SseFrame PresenceFanout::SnapshotFor(SseSink* sink) const {
  auto it = filters_.find(sink);
  if (it == filters_.end()) return nullptr;
  if (!ready_) return stale_frame_;
  SseFrame snapshot = SnapshotFrame(it->second);
  if (stale_frame_ == nullptr) return snapshot;
  return std::make_shared<const std::string>(
      absl::StrCat(*snapshot, *stale_frame_));
}

void PresenceFanout::Broadcast(const SseFrame& frame) {
  for (const auto& entry : filters_) {
    entry.first->Send(frame);
  }
}

SseFrame PresenceFanout::SnapshotFrame(
    const std::vector<int64_t>& users) const {
  // Every browser that watches everyone gets the same bytes: build them once
  // per state of the mirror (10,000 browsers after a restart of presenced
  // share one frame, not 10,000 copies).
  if (users.empty() && everyone_snapshot_ != nullptr) {
    return everyone_snapshot_;
  }
  std::vector<int64_t> online;
  std::string entries = "[";
  auto add = [&](int64_t user, const std::string& entry) {
    if (!online.empty()) entries += ",";
    online.push_back(user);
    entries += entry;
  };
  if (users.empty()) {
    for (const auto& [user, entry] : online_) add(user, entry);
  } else {
    for (int64_t user : users) {
      auto it = online_.find(user);
      if (it != online_.end()) add(user, it->second);
    }
  }
  entries += "]";
  Struct data;
  (*data.mutable_fields())["server_time"].set_string_value(server_time_);
  SseFrame frame = std::make_shared<const std::string>(
      Frame("snapshot", JsonObject(data, {{"online_users", JsonIdList(online)},
                                          {"users", entries}})));
  if (users.empty()) everyone_snapshot_ = frame;
  return frame;
}

}  // namespace presence::rest
