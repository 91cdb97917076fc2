#include "gateway/fanout.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gateway/json.h"
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
    default:
      return "unspecified";
  }
}

}  // namespace

std::string ChangeFrame(const v1::PresenceChange& change) {
  Struct data;
  auto& fields = *data.mutable_fields();
  fields["status"].set_string_value(
      change.status() == v1::STATUS_ONLINE ? "online" : "offline");
  fields["reason"].set_string_value(ReasonName(change.reason()));
  fields["at"].set_string_value(TimeUtil::ToString(change.at()));
  // Ids as numbers, as browsers expect them (the classic API's
  // {"online_users": [1, 5, 12]}), and exact.
  return Frame("change",
               JsonObject(data, {{"user_id", absl::StrCat(change.user_id())}}));
}

std::string StaleFrame(const std::string& reason) {
  Struct data;
  (*data.mutable_fields())["reason"].set_string_value(reason);
  return Frame("stale", JsonObject(data));
}

void PresenceFanout::ApplySnapshot(const v1::Snapshot& snapshot) {
  online_.clear();
  online_.insert(snapshot.online_users().begin(),
                 snapshot.online_users().end());
  server_time_ = TimeUtil::ToString(snapshot.server_time());
  ready_ = true;
  stale_frame_ = nullptr;
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
  if (users.empty()) {
    online.assign(online_.begin(), online_.end());
  } else {
    for (int64_t user : users) {
      if (online_.contains(user)) online.push_back(user);
    }
  }
  Struct data;
  (*data.mutable_fields())["server_time"].set_string_value(server_time_);
  SseFrame frame = std::make_shared<const std::string>(Frame(
      "snapshot", JsonObject(data, {{"online_users", JsonIdList(online)}})));
  if (users.empty()) everyone_snapshot_ = frame;
  return frame;
}

}  // namespace presence::rest
