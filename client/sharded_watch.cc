// presence::Client's WatchPresenceAsync over several shards: one stream per
// shard, merged into one snapshot and one stream of changes. OnlinePart,
// each shard's share of that snapshot, serves presence::Watcher too.
#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "client/client_internal.h"

namespace presence::internal {

bool IsOnline(v1::Status status) {
  return status == v1::STATUS_ONLINE || status == v1::STATUS_AWAY ||
         status == v1::STATUS_DND;
}

void OnlinePart::Reset(const v1::Snapshot& snapshot) {
  users_.clear();
  presences_.clear();
  if (!rich_) {
    users_.insert(snapshot.online_users().begin(),
                  snapshot.online_users().end());
    return;
  }
  if (snapshot.users_size() == snapshot.online_users_size()) {
    for (const v1::UserPresence& user : snapshot.users()) {
      presences_[user.user_id()] = user;
    }
    return;
  }
  for (int64_t id : snapshot.online_users()) {
    v1::UserPresence& user = presences_[id];
    user.set_user_id(id);
    user.set_status(v1::STATUS_ONLINE);
  }
}

void OnlinePart::Apply(const v1::PresenceChange& change) {
  const int64_t id = change.user_id();
  if (!IsOnline(change.status())) {
    users_.erase(id);
    presences_.erase(id);
    return;
  }
  if (!rich_) {
    users_.insert(id);
    return;
  }
  v1::UserPresence& user = presences_[id];
  user.set_user_id(id);
  user.set_status(change.status());
  // Others never see INVISIBLE: an online user's availability, as others
  // see it, is DND exactly when their status is.
  user.set_availability(change.status() == v1::STATUS_DND
                            ? v1::AVAILABILITY_DND
                            : v1::AVAILABILITY_AUTO);
  if (change.has_availability_until()) {
    *user.mutable_availability_until() = change.availability_until();
  } else {
    user.clear_availability_until();
  }
  if (change.has_custom_status()) {
    *user.mutable_custom_status() = change.custom_status();
  } else {
    user.clear_custom_status();
  }
}

v1::Snapshot OnlinePart::Merge(absl::Span<const OnlinePart* const> parts,
                               const google::protobuf::Timestamp& server_time) {
  v1::Snapshot snapshot;
  *snapshot.mutable_server_time() = server_time;
  const bool rich = !parts.empty() && parts.front()->rich_;
  size_t count = 0;
  for (const OnlinePart* part : parts) count += part->size();
  if (!rich) {
    std::vector<int64_t> users;
    users.reserve(count);
    for (const OnlinePart* part : parts) {
      users.insert(users.end(), part->users_.begin(), part->users_.end());
    }
    std::sort(users.begin(), users.end());
    snapshot.mutable_online_users()->Add(users.begin(), users.end());
    return snapshot;
  }
  std::vector<const v1::UserPresence*> users;
  users.reserve(count);
  for (const OnlinePart* part : parts) {
    for (const auto& [id, user] : part->presences_) users.push_back(&user);
  }
  std::sort(users.begin(), users.end(),
            [](const v1::UserPresence* a, const v1::UserPresence* b) {
              return a->user_id() < b->user_id();
            });
  snapshot.mutable_online_users()->Reserve(static_cast<int>(users.size()));
  snapshot.mutable_users()->Reserve(static_cast<int>(users.size()));
  for (const v1::UserPresence* user : users) {
    snapshot.add_online_users(user->user_id());
    *snapshot.add_users() = *user;
  }
  return snapshot;
}

namespace {

// What a sharded WatchPresenceAsync has received: each shard's online users,
// so that one Snapshot can stand for all of them.
class MergedWatch {
 public:
  MergedWatch(const ShardMap* map, std::vector<size_t> shards, bool merge,
              bool rich,
              absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
              absl::AnyInvocable<void(absl::Status) &&> on_done)
      : map_(map),
        shards_(std::move(shards)),
        merge_(merge),
        on_message_(std::move(on_message)),
        on_done_(std::move(on_done)),
        online_(shards_.size(), OnlinePart(rich)),
        has_snapshot_(shards_.size(), false),
        snapshots_missing_(shards_.size()),
        running_(shards_.size()) {}

  // Before any stream starts: what ends them all.
  void SetContexts(std::vector<std::shared_ptr<grpc::ClientContext>> contexts)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    contexts_ = std::move(contexts);
  }

  // Stream `k`'s next message.
  void OnMessage(size_t k, v1::WatchPresenceResponse message)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (ended_) return;  // the consumer hears of nothing after an end
    if (!merge_) return on_message_(std::move(message));
    switch (message.event_case()) {
      case v1::WatchPresenceResponse::kSnapshot: {
        const v1::Snapshot& snapshot = message.snapshot();
        online_[k].Reset(snapshot);
        KeepLatest(snapshot.server_time(), &snapshot_time_);
        if (!has_snapshot_[k]) {
          has_snapshot_[k] = true;
          --snapshots_missing_;
        }
        if (snapshots_missing_ == 0) on_message_(MergedSnapshot());
        return;
      }
      case v1::WatchPresenceResponse::kChange:
        online_[k].Apply(message.change());
        break;
      case v1::WatchPresenceResponse::kChanges:
        for (const v1::PresenceChange& change : message.changes().changes()) {
          online_[k].Apply(change);
        }
        break;
      default:  // a kind newer than this client: passed on
        break;
    }
    if (snapshots_missing_ == 0) on_message_(std::move(message));
  }

  // Stream `k` has ended: the first to end ends the others, the last to end
  // tells the consumer.
  void OnDone(size_t k, const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::AnyInvocable<void(absl::Status) &&> on_done;
    absl::Status end;
    {
      absl::MutexLock lock(&mu_);
      if (!ended_) {
        ended_ = true;
        end_ = ShardError(map_->shard(shards_[k]), status);
        // gRPC runs no callback inline in TryCancel(); a stream not started
        // yet is cancelled as it starts.
        for (const auto& context : contexts_) context->TryCancel();
      }
      if (--running_ > 0) return;
      on_done = std::move(on_done_);
      end = end_;
      // What the consumer's callbacks hold goes while the Client lives.
      on_message_ = nullptr;
      contexts_.clear();
    }
    std::move(on_done)(std::move(end));
  }

 private:
  v1::WatchPresenceResponse MergedSnapshot()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<const OnlinePart*> parts;
    for (const OnlinePart& part : online_) parts.push_back(&part);
    v1::WatchPresenceResponse message;
    *message.mutable_snapshot() = OnlinePart::Merge(parts, snapshot_time_);
    return message;
  }

  const ShardMap* const map_;
  const std::vector<size_t> shards_;  // stream k's shard
  // With send_snapshot: merge the snapshots, and hold changes until then.
  const bool merge_;
  // Held while the consumer's callbacks run: one at a time, and never after
  // the end.
  absl::Mutex mu_;
  absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message_
      ABSL_GUARDED_BY(mu_);
  absl::AnyInvocable<void(absl::Status) &&> on_done_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<grpc::ClientContext>> contexts_
      ABSL_GUARDED_BY(mu_);
  // By stream: who its shard has said is online.
  std::vector<OnlinePart> online_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> has_snapshot_ ABSL_GUARDED_BY(mu_);
  size_t snapshots_missing_ ABSL_GUARDED_BY(mu_);
  google::protobuf::Timestamp snapshot_time_ ABSL_GUARDED_BY(mu_);
  size_t running_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void ShardedWatchPresenceAsync(
    const std::shared_ptr<AsyncCalls>& calls,
    std::shared_ptr<grpc::ClientContext> context,
    v1::WatchPresenceRequest request,
    absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
    absl::AnyInvocable<void(absl::Status) &&> on_done) {
  const ShardMap& map = calls->shard_map();
  if (request.resume_after() != 0) {
    return std::move(on_done)(absl::InvalidArgumentError(
        "resume_after: a sharded WatchPresence cannot be resumed (each shard "
        "has its own epoch and sequence); start again with send_snapshot, or "
        "use presence::Watcher, which resumes each shard"));
  }
  if (absl::Status s = CheckUserIds(request.user_ids()); !s.ok()) {
    return std::move(on_done)(s);
  }
  const std::vector<std::vector<int64_t>> ids =
      IdsByOwner(map, request.user_ids());
  std::vector<size_t> shards;
  for (size_t shard = 0; shard < map.size(); ++shard) {
    if (request.user_ids().empty() || !ids[shard].empty()) {
      shards.push_back(shard);
    }
  }
  // The caller's context carries the first stream; the others get their
  // own, with its deadline, and end with it (a stream's end ends all).
  std::vector<std::shared_ptr<grpc::ClientContext>> contexts;
  const auto deadline = context->deadline();
  contexts.push_back(std::move(context));
  for (size_t k = 1; k < shards.size(); ++k) {
    auto other = std::make_shared<grpc::ClientContext>();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      other->set_deadline(deadline);
    }
    contexts.push_back(std::move(other));
  }
  auto watch = std::make_shared<MergedWatch>(
      &map, shards, request.send_snapshot(), request.rich_status(),
      std::move(on_message), std::move(on_done));
  watch->SetContexts(contexts);
  for (size_t k = 0; k < shards.size(); ++k) {
    v1::WatchPresenceRequest part = request;
    part.mutable_user_ids()->Assign(ids[shards[k]].begin(),
                                    ids[shards[k]].end());
    auto stream = std::make_unique<WatchStream>(
        calls, shards[k], contexts[k], std::move(part),
        [watch, k](v1::WatchPresenceResponse message) {
          watch->OnMessage(k, std::move(message));
        },
        [watch, k](absl::Status status) { watch->OnDone(k, status); });
    if (!stream->Start()) {
      std::move(*stream).Refuse();
      continue;
    }
    stream.release();  // OnDone deletes it
  }
}

}  // namespace presence::internal
