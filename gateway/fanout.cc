#include "gateway/fanout.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace presence::rest {
namespace {

using google::protobuf::Struct;
using google::protobuf::util::TimeUtil;

std::string Frame(absl::string_view event, const Struct& data) {
  std::string json;
  // A Struct always serialises; its numbers are JSON numbers, as browsers
  // expect user ids (the classic API's {"online_users": [1, 5, 12]}).
  (void)google::protobuf::util::MessageToJsonString(data, &json);
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
    default:
      return "unspecified";
  }
}

}  // namespace

std::string ChangeFrame(const v1::PresenceChange& change) {
  Struct data;
  auto& fields = *data.mutable_fields();
  fields["user_id"].set_number_value(static_cast<double>(change.user_id()));
  fields["status"].set_string_value(
      change.status() == v1::STATUS_ONLINE ? "online" : "offline");
  fields["reason"].set_string_value(ReasonName(change.reason()));
  fields["at"].set_string_value(TimeUtil::ToString(change.at()));
  return Frame("change", data);
}

void PresenceFanout::ApplySnapshot(const v1::Snapshot& snapshot) {
  online_.clear();
  online_.insert(snapshot.online_users().begin(),
                 snapshot.online_users().end());
  server_time_ = TimeUtil::ToString(snapshot.server_time());
  ready_ = true;
  everyone_snapshot_ = nullptr;
  for (const auto& [sink, users] : filters_) {
    sink->Send(SnapshotFrame(users));
  }
}

void PresenceFanout::ApplyChange(const v1::PresenceChange& change) {
  if (change.status() == v1::STATUS_ONLINE) {
    online_.insert(change.user_id());
  } else {
    online_.erase(change.user_id());
  }
  // The mirror is now as of this change: later snapshots say so.
  server_time_ = TimeUtil::ToString(change.at());
  everyone_snapshot_ = nullptr;
  if (!ready_) return;  // the first snapshot will carry it
  auto watchers = by_user_.find(change.user_id());
  if (everyone_.empty() && watchers == by_user_.end()) return;
  SseFrame frame = std::make_shared<const std::string>(ChangeFrame(change));
  for (SseSink* sink : everyone_) sink->Send(frame);
  if (watchers != by_user_.end()) {
    for (SseSink* sink : watchers->second) sink->Send(frame);
  }
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
  if (!ready_ || it == filters_.end()) return nullptr;
  return SnapshotFrame(it->second);
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
  Struct data;
  auto& fields = *data.mutable_fields();
  auto* online = fields["online_users"].mutable_list_value();
  auto add = [online](int64_t user) {
    online->add_values()->set_number_value(static_cast<double>(user));
  };
  if (users.empty()) {
    for (int64_t user : online_) add(user);
  } else {
    for (int64_t user : users) {
      if (online_.contains(user)) add(user);
    }
  }
  fields["server_time"].set_string_value(server_time_);
  SseFrame frame = std::make_shared<const std::string>(Frame("snapshot", data));
  if (users.empty()) everyone_snapshot_ = frame;
  return frame;
}

}  // namespace presence::rest
