// presence::Client and presence::Watcher over a sharded deployment: three
// real presenced shards (--shard, --shards) on loopback. Users are spread
// by the rendezvous hash and each shard holds only its own; reads merge
// the shards' answers into what one presenced would say; a watcher follows
// every shard as one view, through a kill -9 and restart of one; a shard
// that is down fails only what needs it, and says which it is.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/client_internal.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "presence/shard_map.h"
#include "presence/watcher.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using testing::Await;

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::RunningPresenced;
using testing::StartPresenced;
using testing::TempDir;

// Long enough for a sanitizer build, short enough to fail a test whose
// condition never comes.
constexpr absl::Duration kWait = absl::Seconds(20);
constexpr size_t kShards = 3;
const char* const kNames[kShards] = {"s0", "s1", "s2"};

ClientOptions Options(const std::string& target) {
  ClientOptions options;
  options.target = target;
  options.deadline = absl::Seconds(10);
  return options;
}

std::set<int64_t> Range(int64_t first, int64_t last) {
  std::set<int64_t> ids;
  for (int64_t id = first; id <= last; ++id) ids.insert(id);
  return ids;
}

std::vector<int64_t> Sorted(const std::set<int64_t>& ids) {
  return std::vector<int64_t>(ids.begin(), ids.end());
}

// Heartbeats for every user of `users`, in batches of 5,000.
void HeartbeatAll(Client& client, const std::set<int64_t>& users) {
  v1::BatchHeartbeatRequest batch;
  auto send = [&] {
    absl::StatusOr<v1::BatchHeartbeatResponse> answer =
        client.BatchHeartbeat(batch);
    ASSERT_TRUE(answer.ok()) << answer.status();
    ASSERT_EQ(answer->results_size(), batch.heartbeats_size());
    for (int i = 0; i < answer->results_size(); ++i) {
      ASSERT_TRUE(answer->results(i).has_heartbeat())
          << i << ": " << answer->results(i).error().message();
    }
    batch.Clear();
  };
  for (int64_t user : users) {
    batch.add_heartbeats()->set_user_id(user);
    if (batch.heartbeats_size() == 5'000) send();
  }
  if (batch.heartbeats_size() > 0) send();
}

// The consumer's view, as a Watcher's callbacks build it.
class View {
 public:
  WatcherCallbacks Callbacks() {
    WatcherCallbacks callbacks;
    callbacks.on_snapshot = [this](const v1::Snapshot& snapshot) {
      Enter();
      absl::MutexLock lock(&mu_);
      online_.clear();
      online_.insert(snapshot.online_users().begin(),
                     snapshot.online_users().end());
      ++snapshots_;
      Leave();
    };
    callbacks.on_change = [this](const v1::PresenceChange& change) {
      Enter();
      absl::MutexLock lock(&mu_);
      if (change.status() == v1::STATUS_ONLINE) {
        online_.insert(change.user_id());
      } else {
        online_.erase(change.user_id());
      }
      Leave();
    };
    callbacks.on_message = [this](const v1::WatchPresenceResponse& message) {
      Enter();
      absl::MutexLock lock(&mu_);
      epochs_.insert(message.epoch());
      Leave();
    };
    callbacks.on_disconnect = [this](const absl::Status& status,
                                     absl::Duration) {
      Enter();
      absl::MutexLock lock(&mu_);
      disconnects_.push_back(status);
      Leave();
    };
    return callbacks;
  }

  // Waits until the view is `expected`; false (saying what differs) after
  // kWait.
  ::testing::AssertionResult WaitFor(const std::set<int64_t>& expected) {
    absl::MutexLock lock(&mu_);
    auto matches = [&] { return snapshots_ > 0 && online_ == expected; };
    if (mu_.AwaitWithTimeout(absl::Condition(&matches), kWait)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "after " << kWait << " the view has " << online_.size()
           << " users online (" << snapshots_ << " snapshots), not "
           << expected.size();
  }

  // Waits for a disconnect whose message contains `needle`.
  ::testing::AssertionResult WaitForDisconnect(absl::string_view needle,
                                               absl::StatusCode code) {
    absl::MutexLock lock(&mu_);
    auto seen = [&] {
      for (const absl::Status& status : disconnects_) {
        if (status.code() == code &&
            absl::StrContains(status.message(), needle)) {
          return true;
        }
      }
      return false;
    };
    if (mu_.AwaitWithTimeout(absl::Condition(&seen), kWait)) {
      return ::testing::AssertionSuccess();
    }
    ::testing::AssertionResult failure = ::testing::AssertionFailure();
    failure << "no disconnect with \"" << needle << "\"; saw:";
    for (const absl::Status& status : disconnects_) failure << " " << status;
    return failure;
  }

  int snapshots() {
    absl::MutexLock lock(&mu_);
    return snapshots_;
  }
  size_t epochs() {
    absl::MutexLock lock(&mu_);
    return epochs_.size();
  }
  bool overlapped() const { return overlapped_.load(); }

 private:
  // Callbacks must come one at a time.
  void Enter() {
    if (inside_.fetch_add(1) != 0) overlapped_ = true;
  }
  void Leave() { inside_.fetch_sub(1); }

  std::atomic<int> inside_{0};
  std::atomic<bool> overlapped_{false};
  absl::Mutex mu_;
  std::set<int64_t> online_ ABSL_GUARDED_BY(mu_);
  int snapshots_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::string> epochs_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> disconnects_ ABSL_GUARDED_BY(mu_);
};

class ShardedClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::string> targets;
    for (size_t i = 0; i < kShards; ++i) {
      shards_.push_back(StartShard(i, ""));
      ASSERT_FALSE(shards_[i].address.empty());
      targets.push_back(absl::StrCat(kNames[i], "=", shards_[i].address));
    }
    target_ = absl::StrJoin(targets, ",");
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Create(Options(target_));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    map_ = &client_->shard_map();
    ASSERT_TRUE(map_->sharded());
    ASSERT_EQ(map_->size(), kShards);
  }

  // Shard i with its db; on `listen` (empty: a free port).
  RunningPresenced StartShard(size_t i, const std::string& listen) {
    std::vector<std::string> flags = {
        absl::StrCat("--db=", dir_.File(absl::StrCat(kNames[i], ".db"))),
        absl::StrCat("--shard=", kNames[i]), "--shards=s0,s1,s2"};
    if (!listen.empty()) flags.push_back("--listen=" + listen);
    return StartPresenced(flags);
  }

  void Kill(size_t i) {
    shards_[i].process->Signal(SIGKILL);
    EXPECT_EQ(shards_[i].process->Wait().signal, SIGKILL);
  }

  void Restart(size_t i) {
    const std::string address = shards_[i].address;
    shards_[i] = StartShard(i, address);
    ASSERT_EQ(shards_[i].address, address);
  }

  // An unsharded client of shard i alone.
  std::unique_ptr<Client> Direct(size_t i) {
    return std::make_unique<Client>(Options(shards_[i].address));
  }

  // Some users of `users` that shard i owns, or that it does not.
  std::set<int64_t> OwnedBy(size_t i, const std::set<int64_t>& users,
                            bool owned = true) {
    std::set<int64_t> out;
    for (int64_t user : users) {
      if ((map_->OwnerIndex(user) == i) == owned) out.insert(user);
    }
    return out;
  }

  TempDir dir_;
  std::vector<RunningPresenced> shards_;
  std::string target_;
  std::unique_ptr<Client> client_;
  const ShardMap* map_ = nullptr;
};

TEST_F(ShardedClientTest, SpreadsUsersAndMergesEveryRead) {
  const std::set<int64_t> everyone = Range(1, 30'000);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, everyone));

  // Each shard holds its own users, about a third of them.
  size_t held = 0;
  for (size_t i = 0; i < kShards; ++i) {
    absl::StatusOr<std::vector<int64_t>> own = Direct(i)->ListAllOnline();
    ASSERT_TRUE(own.ok()) << own.status();
    EXPECT_GE(own->size(), 30'000 * 25 / 100) << kNames[i];
    EXPECT_LE(own->size(), 30'000 * 42 / 100) << kNames[i];
    for (int64_t user : *own) {
      ASSERT_EQ(map_->OwnerIndex(user), i) << user << " on " << kNames[i];
    }
    held += own->size();
  }
  EXPECT_EQ(held, everyone.size());

  absl::StatusOr<std::vector<int64_t>> all = client_->ListAllOnline();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, Sorted(everyone));

  // Small pages: the client's token carries the cursor between them.
  std::vector<int64_t> paged;
  v1::ListOnlineRequest request;
  request.set_page_size(997);
  int pages = 0;
  do {
    absl::StatusOr<v1::ListOnlineResponse> page = client_->ListOnline(request);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_LE(page->online_users_size(), 997);
    EXPECT_EQ(page->total_online(), 30'000);
    EXPECT_TRUE(page->has_server_time());
    paged.insert(paged.end(), page->online_users().begin(),
                 page->online_users().end());
    if (!page->next_page_token().empty()) {
      std::string raw;
      ASSERT_TRUE(absl::WebSafeBase64Unescape(page->next_page_token(), &raw));
      EXPECT_EQ(page->next_page_token().find('='), std::string::npos);
      EXPECT_TRUE(absl::StartsWith(
          raw, absl::StrCat("sharded-after:", paged.back(), ";done:")))
          << raw;
    }
    request.set_page_token(page->next_page_token());
    ASSERT_LT(++pages, 100);
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, (30'000 + 996) / 997);
  EXPECT_EQ(paged, Sorted(everyone));

  // A token this client did not write is refused.
  request.set_page_token(absl::WebSafeBase64Escape("after:5"));
  EXPECT_EQ(client_->ListOnline(request).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Some users, over every shard, a page of two at a time.
  const std::vector<int64_t> some = {29'999, 40'000, 5, 17, 30'001, 12'345, 2};
  v1::ListOnlineRequest only;
  only.mutable_user_ids()->Add(some.begin(), some.end());
  absl::StatusOr<v1::ListOnlineResponse> listed = client_->ListOnline(only);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(listed->online_users(), ElementsAre(2, 5, 17, 12'345, 29'999));
  EXPECT_EQ(listed->total_online(), 5);
  EXPECT_TRUE(listed->next_page_token().empty());
  only.set_page_size(2);
  std::vector<int64_t> pairs;
  do {
    absl::StatusOr<v1::ListOnlineResponse> page = client_->ListOnline(only);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->online_users_size(), 2);
    EXPECT_EQ(page->total_online(), 5);
    pairs.insert(pairs.end(), page->online_users().begin(),
                 page->online_users().end());
    only.set_page_token(page->next_page_token());
  } while (!only.page_token().empty());
  EXPECT_THAT(pairs, ElementsAre(2, 5, 17, 12'345, 29'999));
  absl::StatusOr<std::vector<int64_t>> all_of_some =
      client_->ListAllOnline(some);
  ASSERT_TRUE(all_of_some.ok()) << all_of_some.status();
  EXPECT_THAT(*all_of_some, ElementsAre(2, 5, 17, 12'345, 29'999));

  // GetPresence answers in request order, duplicates repeated, from every
  // shard.
  ASSERT_TRUE(client_->MarkOffline(17).ok());
  const std::vector<int64_t> asked = {30'005, 7, 17, 12'345, 7, 29'999};
  absl::StatusOr<v1::GetPresenceResponse> presence =
      client_->GetPresence(asked);
  ASSERT_TRUE(presence.ok()) << presence.status();
  ASSERT_EQ(presence->users_size(), static_cast<int>(asked.size()));
  std::set<size_t> owners;
  for (size_t i = 0; i < asked.size(); ++i) {
    const v1::UserPresence& user = presence->users(static_cast<int>(i));
    EXPECT_EQ(user.user_id(), asked[i]);
    owners.insert(map_->OwnerIndex(asked[i]));
    const bool online = asked[i] != 30'005 && asked[i] != 17;
    EXPECT_EQ(user.status(), online ? v1::STATUS_ONLINE : v1::STATUS_OFFLINE)
        << asked[i];
    EXPECT_EQ(user.has_last_seen(), asked[i] != 30'005) << asked[i];
  }
  EXPECT_EQ(owners.size(), kShards);

  // A bad item fails alone, its message naming the shard and its index in
  // this request.
  v1::BatchHeartbeatRequest batch;
  batch.add_heartbeats()->set_user_id(40'001);
  batch.add_heartbeats()->set_user_id(0);
  batch.add_heartbeats()->set_user_id(40'002);
  absl::StatusOr<v1::BatchHeartbeatResponse> answer =
      client_->BatchHeartbeat(batch);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->results_size(), 3);
  EXPECT_TRUE(answer->results(0).has_heartbeat());
  EXPECT_TRUE(answer->results(2).has_heartbeat());
  EXPECT_EQ(answer->results(1).error().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(answer->results(1).error().message(),
              HasSubstr(absl::StrCat("shard ", map_->OwnerName(0), " (")));
  EXPECT_THAT(answer->results(1).error().message(),
              HasSubstr("heartbeats[1].user_id"));
}

// Every change reaches a watcher of everyone; a shard killed fails only
// its users' calls, quickly, naming itself; restarted on its port and db,
// the watcher has it back with nothing lost.
TEST_F(ShardedClientTest, WatcherFollowsEveryShardThroughAKillAndRestart) {
  std::set<int64_t> expected = Range(1, 3'000);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, expected));
  View view;
  WatcherOptions options;
  options.max_backoff = absl::Milliseconds(500);
  Watcher watcher(*client_, options, view.Callbacks());
  ASSERT_TRUE(view.WaitFor(expected));
  EXPECT_EQ(view.snapshots(), 1);

  // New users come online, others log out, on every shard.
  const std::set<int64_t> newcomers = Range(3'001, 3'300);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, newcomers));
  expected.insert(newcomers.begin(), newcomers.end());
  for (int64_t user = 1; user <= 300; ++user) {
    ASSERT_TRUE(client_->MarkOffline(user).ok());
    expected.erase(user);
  }
  ASSERT_TRUE(view.WaitFor(expected));
  EXPECT_EQ(view.snapshots(), 1);

  constexpr size_t kVictim = 1;
  const std::set<int64_t> victims = OwnedBy(kVictim, expected);
  const std::set<int64_t> others = OwnedBy(kVictim, expected, false);
  ASSERT_FALSE(victims.empty());
  const int64_t victim = *victims.begin();
  const int64_t other = *others.begin();
  const std::string named = absl::StrCat("shard s1 (", shards_[1].address, ")");
  Kill(kVictim);

  // Its users' calls fail UNAVAILABLE soon, naming it.
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::HeartbeatResponse> lost = client_->Heartbeat(victim);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(lost.status().message()), HasSubstr(named));
  absl::StatusOr<v1::GetPresenceResponse> both =
      client_->GetPresence({other, victim});
  EXPECT_EQ(both.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(both.status().message()), HasSubstr(named));
  v1::BatchHeartbeatRequest batch;
  batch.add_heartbeats()->set_user_id(victim);
  batch.add_heartbeats()->set_user_id(other);
  absl::StatusOr<v1::BatchHeartbeatResponse> half =
      client_->BatchHeartbeat(batch);
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_EQ(half->results(0).error().code(),
            static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(half->results(0).error().message(), HasSubstr(named));
  EXPECT_TRUE(half->results(1).has_heartbeat());

  // The others' are not affected.
  EXPECT_TRUE(client_->Heartbeat(other).ok());
  absl::StatusOr<v1::GetPresenceResponse> alive = client_->GetPresence({other});
  ASSERT_TRUE(alive.ok()) << alive.status();
  EXPECT_EQ(alive->users(0).status(), v1::STATUS_ONLINE);

  // A listing fails naming it, unless the caller takes what there is.
  absl::StatusOr<std::vector<int64_t>> listing = client_->ListAllOnline();
  EXPECT_EQ(listing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(listing.status().message()), HasSubstr(named));
  v1::ListOnlineRequest page;
  EXPECT_EQ(client_->ListOnline(page).status().code(),
            absl::StatusCode::kUnavailable);
  absl::StatusOr<OnlineUsers> partial = client_->ListAllOnlinePartial();
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_EQ(partial->users, Sorted(others));
  ASSERT_EQ(partial->missing_shards.size(), 1u);
  EXPECT_EQ(partial->missing_shards[0].name, "s1");
  EXPECT_EQ(partial->missing_shards[0].target, shards_[1].address);
  EXPECT_EQ(partial->missing_shards[0].status.code(),
            absl::StatusCode::kUnavailable);

  // The watcher says which shard it lost, and goes on with the others.
  EXPECT_TRUE(view.WaitForDisconnect(named, absl::StatusCode::kUnavailable));
  for (int64_t user : OwnedBy(kVictim, Range(301, 400), false)) {
    ASSERT_TRUE(client_->MarkOffline(user).ok());
    expected.erase(user);
  }
  ASSERT_TRUE(view.WaitFor(expected));

  // A watcher that may see part of everyone starts with the shards that
  // answer.
  View part;
  options.partial_snapshots = true;
  auto partial_watcher =
      std::make_unique<Watcher>(*client_, options, part.Callbacks());
  ASSERT_TRUE(part.WaitFor(OwnedBy(kVictim, expected, false)));

  // Back on its port with its db: both watchers have its users again.
  ASSERT_NO_FATAL_FAILURE(Restart(kVictim));
  ASSERT_TRUE(view.WaitFor(expected));
  ASSERT_TRUE(part.WaitFor(expected));
  partial_watcher.reset();
  EXPECT_FALSE(part.overlapped());

  // And its changes again, once the client is back too.
  client_->ResetConnectionBackoff();
  const std::set<int64_t> more = Range(5'001, 5'300);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, more));
  expected.insert(more.begin(), more.end());
  for (int64_t user : OwnedBy(kVictim, Range(401, 600))) {
    ASSERT_TRUE(client_->MarkOffline(user).ok());
    expected.erase(user);
  }
  ASSERT_TRUE(view.WaitFor(expected));
  absl::StatusOr<std::vector<int64_t>> again = client_->ListAllOnline();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, Sorted(expected));
  watcher.Stop();
  EXPECT_FALSE(view.overlapped());
}

// A watcher of some users follows only the shards that own them.
TEST_F(ShardedClientTest, FilteredWatcherFollowsOnlyTheOwningShards) {
  const std::set<int64_t> users = Range(1, 200);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, users));
  std::set<int64_t> watched;
  for (int64_t user : users) {
    if (map_->OwnerIndex(user) != 2 && user % 3 == 0) watched.insert(user);
  }
  View view;
  WatcherOptions options;
  options.user_ids = Sorted(watched);
  Watcher watcher(*client_, options, view.Callbacks());
  ASSERT_TRUE(view.WaitFor(watched));
  EXPECT_EQ(view.epochs(), 2u);  // s0's and s1's streams

  Kill(2);  // not followed: no disconnect, nothing changes
  const int64_t first = *watched.begin();
  ASSERT_TRUE(client_->MarkOffline(first).ok());
  watched.erase(first);
  ASSERT_TRUE(view.WaitFor(watched));
  watcher.Stop();
  EXPECT_EQ(view.epochs(), 2u);
  EXPECT_FALSE(view.overlapped());
}

// What one WatchPresenceAsync delivered.
struct RawStream {
  absl::Mutex mu;
  std::vector<v1::WatchPresenceResponse> messages ABSL_GUARDED_BY(mu);
  std::set<int64_t> online ABSL_GUARDED_BY(mu);
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  absl::Notification done;
  absl::Status status;
  int dones = 0;
};

void Open(Client& client, const std::shared_ptr<grpc::ClientContext>& context,
          const std::shared_ptr<RawStream>& stream, uint64_t resume_after = 0,
          bool rich = false) {
  v1::WatchPresenceRequest request;
  request.set_send_snapshot(true);
  request.set_max_batch(100);
  request.set_rich_status(rich);
  if (resume_after != 0) {
    request.set_resume_after(resume_after);
    request.set_epoch("x");
  }
  client.WatchPresenceAsync(
      context, std::move(request),
      [stream](v1::WatchPresenceResponse message) {
        if (stream->inside.fetch_add(1) != 0) stream->overlapped = true;
        {
          absl::MutexLock lock(&stream->mu);
          if (message.has_snapshot()) {
            stream->online.clear();
            stream->online.insert(message.snapshot().online_users().begin(),
                                  message.snapshot().online_users().end());
          }
          std::vector<v1::PresenceChange> changes(
              message.changes().changes().begin(),
              message.changes().changes().end());
          if (message.has_change()) changes.push_back(message.change());
          for (const v1::PresenceChange& change : changes) {
            // Rich streams tell AWAY and DND, which are online too.
            if (change.status() != v1::STATUS_OFFLINE) {
              stream->online.insert(change.user_id());
            } else {
              stream->online.erase(change.user_id());
            }
          }
          stream->messages.push_back(std::move(message));
        }
        stream->inside.fetch_sub(1);
      },
      [stream](absl::Status status) {
        stream->status = std::move(status);
        ++stream->dones;
        stream->done.Notify();
      });
}

bool WaitForOnline(RawStream& stream, const std::set<int64_t>& expected) {
  absl::MutexLock lock(&stream.mu);
  auto matches = [&] {
    return !stream.messages.empty() && stream.online == expected;
  };
  return stream.mu.AwaitWithTimeout(absl::Condition(&matches), kWait);
}

// The raw stream API, as the REST gateway uses it: one merged snapshot,
// then every shard's changes; a shard's end ends it, naming the shard.
TEST_F(ShardedClientTest, WatchPresenceAsyncMergesTheShardsIntoOneStream) {
  std::set<int64_t> expected = Range(1, 600);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, expected));
  auto stream = std::make_shared<RawStream>();
  auto context = std::make_shared<grpc::ClientContext>();
  Open(*client_, context, stream);
  ASSERT_TRUE(WaitForOnline(*stream, expected));
  {
    absl::MutexLock lock(&stream->mu);
    ASSERT_EQ(stream->messages.size(), 1u);
    const v1::Snapshot& snapshot = stream->messages[0].snapshot();
    EXPECT_EQ(std::vector<int64_t>(snapshot.online_users().begin(),
                                   snapshot.online_users().end()),
              Sorted(expected));
    EXPECT_TRUE(snapshot.has_server_time());
  }
  const std::set<int64_t> newcomers = Range(601, 650);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, newcomers));
  expected.insert(newcomers.begin(), newcomers.end());
  for (int64_t user = 1; user <= 20; ++user) {
    ASSERT_TRUE(client_->MarkOffline(user).ok());
    expected.erase(user);
  }
  ASSERT_TRUE(WaitForOnline(*stream, expected));
  {
    absl::MutexLock lock(&stream->mu);
    for (size_t i = 1; i < stream->messages.size(); ++i) {
      EXPECT_FALSE(stream->messages[i].has_snapshot()) << i;
    }
  }
  // The caller's context ends every shard's stream: one on_done.
  context->TryCancel();
  ASSERT_TRUE(stream->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(stream->status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(stream->dones, 1);
  EXPECT_FALSE(stream->overlapped);

  // Resuming is per shard: refused.
  auto resumed = std::make_shared<RawStream>();
  Open(*client_, std::make_shared<grpc::ClientContext>(), resumed, 5);
  ASSERT_TRUE(resumed->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(resumed->status.code(), absl::StatusCode::kInvalidArgument);

  // One shard's end ends the stream, naming it.
  auto broken = std::make_shared<RawStream>();
  Open(*client_, std::make_shared<grpc::ClientContext>(), broken);
  ASSERT_TRUE(WaitForOnline(*broken, expected));
  Kill(2);
  ASSERT_TRUE(broken->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(broken->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(broken->status.message()),
              HasSubstr(absl::StrCat("shard s2 (", shards_[2].address, ")")));
  EXPECT_EQ(broken->dones, 1);
}

// The asynchronous calls split and merge like the blocking ones; and the
// Client's end ends a sharded stream, with one on_done, before it returns.
TEST_F(ShardedClientTest, AsyncCallsMergeLikeTheBlockingOnes) {
  const std::set<int64_t> everyone = Range(1, 2'000);
  v1::BatchHeartbeatRequest batch;
  for (int64_t user : everyone) batch.add_heartbeats()->set_user_id(user);
  absl::StatusOr<v1::BatchHeartbeatResponse> beat =
      Await<v1::BatchHeartbeatResponse>([&](auto done) {
        client_->BatchHeartbeatAsync(batch, std::move(done));
      });
  ASSERT_TRUE(beat.ok()) << beat.status();
  ASSERT_EQ(beat->results_size(), 2'000);
  for (const v1::BatchHeartbeatResult& result : beat->results()) {
    ASSERT_TRUE(result.has_heartbeat()) << result.error().message();
  }

  absl::StatusOr<std::vector<int64_t>> all = Await<std::vector<int64_t>>(
      [&](auto done) { client_->ListAllOnlineAsync({}, std::move(done)); });
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, Sorted(everyone));

  v1::ListOnlineRequest request;
  request.set_page_size(300);
  std::vector<int64_t> paged;
  do {
    absl::StatusOr<v1::ListOnlineResponse> page =
        Await<v1::ListOnlineResponse>([&](auto done) {
          client_->ListOnlineAsync(request, absl::Seconds(5), std::move(done));
        });
    ASSERT_TRUE(page.ok()) << page.status();
    absl::StatusOr<v1::ListOnlineResponse> twin = client_->ListOnline(request);
    ASSERT_TRUE(twin.ok()) << twin.status();
    EXPECT_EQ(page->online_users_size(),
              std::min<int>(300, 2'000 - static_cast<int>(paged.size())));
    EXPECT_EQ(std::vector<int64_t>(page->online_users().begin(),
                                   page->online_users().end()),
              std::vector<int64_t>(twin->online_users().begin(),
                                   twin->online_users().end()));
    EXPECT_EQ(page->next_page_token(), twin->next_page_token());
    EXPECT_EQ(page->total_online(), 2'000);
    paged.insert(paged.end(), page->online_users().begin(),
                 page->online_users().end());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(paged, Sorted(everyone));

  const std::vector<int64_t> asked = {1'999, 3, 2'500, 3, 44};
  absl::StatusOr<v1::GetPresenceResponse> presence =
      Await<v1::GetPresenceResponse>([&](auto done) {
        client_->GetPresenceAsync(asked, std::move(done));
      });
  ASSERT_TRUE(presence.ok()) << presence.status();
  ASSERT_EQ(presence->users_size(), 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(presence->users(i).user_id(), asked[i]);
    EXPECT_EQ(presence->users(i).status(),
              asked[i] == 2'500 ? v1::STATUS_OFFLINE : v1::STATUS_ONLINE);
  }
  EXPECT_EQ(Await<v1::GetPresenceResponse>([&](auto done) {
              client_->GetPresenceAsync({5, 0}, std::move(done));
            })
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);

  // With a shard down: its users' calls fail naming it; a partial listing
  // says it is missing.
  const std::set<int64_t> others = OwnedBy(0, everyone, false);
  const int64_t victim = *OwnedBy(0, everyone).begin();
  Kill(0);
  absl::StatusOr<v1::MarkOfflineResponse> lost =
      Await<v1::MarkOfflineResponse>([&](auto done) {
        client_->MarkOfflineAsync(victim, "", std::move(done));
      });
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(lost.status().message()), HasSubstr("shard s0 ("));
  absl::StatusOr<OnlineUsers> partial = Await<OnlineUsers>([&](auto done) {
    client_->ListAllOnlinePartialAsync({}, std::move(done));
  });
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_EQ(partial->users, Sorted(others));
  ASSERT_EQ(partial->missing_shards.size(), 1u);
  EXPECT_EQ(partial->missing_shards[0].name, "s0");
  EXPECT_EQ(Await<std::vector<int64_t>>([&](auto done) {
              client_->ListAllOnlineAsync({}, std::move(done));
            })
                .status()
                .code(),
            absl::StatusCode::kUnavailable);

  // The others' streams stay open until the Client goes.
  auto stream = std::make_shared<RawStream>();
  auto context = std::make_shared<grpc::ClientContext>();
  v1::WatchPresenceRequest watch;
  watch.set_send_snapshot(true);
  watch.mutable_user_ids()->Add(others.begin(), others.end());
  client_->WatchPresenceAsync(
      context, watch,
      [stream](v1::WatchPresenceResponse message) {
        absl::MutexLock lock(&stream->mu);
        stream->messages.push_back(std::move(message));
      },
      [stream](absl::Status status) {
        stream->status = std::move(status);
        ++stream->dones;
        stream->done.Notify();
      });
  {
    absl::MutexLock lock(&stream->mu);
    auto snapshot = [&] { return !stream->messages.empty(); };
    ASSERT_TRUE(stream->mu.AwaitWithTimeout(absl::Condition(&snapshot), kWait));
    EXPECT_EQ(stream->messages[0].snapshot().online_users_size(),
              static_cast<int>(others.size()));
  }
  client_.reset();
  EXPECT_TRUE(stream->done.HasBeenNotified());
  EXPECT_EQ(stream->dones, 1);
  EXPECT_EQ(stream->status.code(), absl::StatusCode::kCancelled);
}

// A shard refuses a call about another shard's user, naming the owner: a
// client with another map, or none, cannot split a user over two shards.
TEST_F(ShardedClientTest, AShardRefusesAnotherShardsUserNamingTheOwner) {
  int64_t user = 1;
  while (map_->OwnerIndex(user) != 0) ++user;
  auto wrong = Direct(1);
  absl::StatusOr<v1::HeartbeatResponse> heartbeat = wrong->Heartbeat(user);
  EXPECT_EQ(heartbeat.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(heartbeat.status().message()),
              HasSubstr("belongs to shard s0"));
  absl::StatusOr<v1::GetPresenceResponse> presence = wrong->GetPresence({user});
  EXPECT_EQ(presence.status().code(), absl::StatusCode::kFailedPrecondition);
  v1::BatchHeartbeatRequest batch;
  batch.add_heartbeats()->set_user_id(user);
  absl::StatusOr<v1::BatchHeartbeatResponse> items =
      wrong->BatchHeartbeat(batch);
  ASSERT_TRUE(items.ok()) << items.status();
  EXPECT_EQ(items->results(0).error().code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  // Routed, the same calls succeed.
  EXPECT_TRUE(client_->Heartbeat(user).ok());
  EXPECT_TRUE(client_->GetPresence({user}).ok());
}

v1::GetPresenceRequest RichLookup(std::vector<int64_t> users,
                                  int64_t viewer = 0, bool rich = true) {
  v1::GetPresenceRequest request;
  request.mutable_user_ids()->Add(users.begin(), users.end());
  request.set_viewer_user_id(viewer);
  request.set_rich_status(rich);
  return request;
}

v1::SetStatusRequest Availability(int64_t user, v1::Availability availability,
                                  const std::string& text = "") {
  v1::SetStatusRequest request;
  request.set_user_id(user);
  request.set_availability(availability);
  if (!text.empty()) request.mutable_custom_status()->set_text(text);
  return request;
}

// Rich presence over shards: SetStatus goes to its user's owner, the parts
// of a GetPresence keep viewer_user_id and rich_status, and a merged rich
// snapshot carries every online user's presence in online_users' order.
TEST_F(ShardedClientTest, RichPresenceIsRoutedAndMerged) {
  const std::set<int64_t> users = Range(1, 60);
  ASSERT_NO_FATAL_FAILURE(HeartbeatAll(*client_, users));
  int64_t of[kShards];  // a user of each shard
  for (size_t i = 0; i < kShards; ++i) of[i] = *OwnedBy(i, users).begin();

  absl::StatusOr<v1::SetStatusResponse> set =
      client_->SetStatus(Availability(of[1], v1::AVAILABILITY_DND, "Focus"));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->presence().status(), v1::STATUS_DND);
  set = Await<v1::SetStatusResponse>([&](auto done) {
    client_->SetStatusAsync(Availability(of[2], v1::AVAILABILITY_INVISIBLE),
                            std::move(done));
  });
  ASSERT_TRUE(set.ok()) << set.status();
  // The owner holds it; another shard refuses the user, naming the owner.
  absl::StatusOr<v1::GetPresenceResponse> held =
      Direct(1)->GetPresence(RichLookup({of[1]}));
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->users(0).status(), v1::STATUS_DND);
  absl::StatusOr<v1::SetStatusResponse> refused =
      Direct(0)->SetStatus(Availability(of[1], v1::AVAILABILITY_AUTO));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("belongs to shard s1"));

  // Every shard's part is asked as the caller asked.
  absl::StatusOr<v1::GetPresenceResponse> got =
      client_->GetPresence(RichLookup({of[2], of[1], of[0]}, of[2]));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->users_size(), 3);
  EXPECT_EQ(got->users(0).status(), v1::STATUS_ONLINE);  // their own view
  EXPECT_EQ(got->users(0).availability(), v1::AVAILABILITY_INVISIBLE);
  EXPECT_EQ(got->users(1).status(), v1::STATUS_DND);
  EXPECT_EQ(got->users(1).custom_status().text(), "Focus");
  EXPECT_EQ(got->users(2).status(), v1::STATUS_ONLINE);
  got = client_->GetPresence(RichLookup({of[2], of[1]}, 0, false));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->users(0).status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(got->users(1).status(), v1::STATUS_ONLINE);  // not asked rich

  // One merged rich snapshot: everyone visible, each with their presence.
  std::set<int64_t> visible = users;
  visible.erase(of[2]);
  auto stream = std::make_shared<RawStream>();
  auto context = std::make_shared<grpc::ClientContext>();
  Open(*client_, context, stream, 0, /*rich=*/true);
  ASSERT_TRUE(WaitForOnline(*stream, visible));
  auto check = [&](const v1::Snapshot& snapshot) {
    EXPECT_EQ(std::vector<int64_t>(snapshot.online_users().begin(),
                                   snapshot.online_users().end()),
              Sorted(visible));
    ASSERT_EQ(snapshot.users_size(), snapshot.online_users_size());
    for (int i = 0; i < snapshot.users_size(); ++i) {
      const v1::UserPresence& user = snapshot.users(i);
      ASSERT_EQ(user.user_id(), snapshot.online_users(i));
      EXPECT_EQ(user.status(),
                user.user_id() == of[1] ? v1::STATUS_DND : v1::STATUS_ONLINE)
          << user.user_id();
      EXPECT_EQ(user.custom_status().text(),
                user.user_id() == of[1] ? "Focus" : "");
    }
  };
  {
    absl::MutexLock lock(&stream->mu);
    ASSERT_TRUE(stream->messages[0].has_snapshot());
    check(stream->messages[0].snapshot());
  }
  // A rich change after it is forwarded as its shard sent it.
  ASSERT_TRUE(
      client_->SetStatus(Availability(of[0], v1::AVAILABILITY_DND)).ok());
  {
    absl::MutexLock lock(&stream->mu);
    auto dnd = [&] {
      for (const v1::WatchPresenceResponse& message : stream->messages) {
        std::vector<v1::PresenceChange> changes(
            message.changes().changes().begin(),
            message.changes().changes().end());
        if (message.has_change()) changes.push_back(message.change());
        for (const v1::PresenceChange& change : changes) {
          if (change.user_id() == of[0] && change.status() == v1::STATUS_DND &&
              change.reason() == v1::REASON_STATUS_SET) {
            return true;
          }
        }
      }
      return false;
    };
    EXPECT_TRUE(stream->mu.AwaitWithTimeout(absl::Condition(&dnd), kWait));
  }
  context->TryCancel();
  ASSERT_TRUE(stream->done.WaitForNotificationWithTimeout(kWait));

  // A Watcher merges the shards' rich snapshots the same way.
  ASSERT_TRUE(
      client_->SetStatus(Availability(of[0], v1::AVAILABILITY_AUTO)).ok());
  absl::Mutex mu;
  std::optional<v1::Snapshot> merged;
  WatcherOptions options;
  options.rich_status = true;
  WatcherCallbacks callbacks;
  callbacks.on_snapshot = [&](const v1::Snapshot& snapshot) {
    absl::MutexLock lock(&mu);
    merged = snapshot;
  };
  Watcher watcher(*client_, options, callbacks);
  {
    absl::MutexLock lock(&mu);
    auto has = [&] { return merged.has_value(); };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&has), kWait));
  }
  watcher.Stop();
  check(*merged);
}

// A shard's part of a merged snapshot, kept up to date by its changes (what
// a merged snapshot made again, when one shard sends a new one, says of
// the other shards' users).
TEST(OnlinePartTest, RichChangesUpdateWhatTheyCarryAndKeepTheRest) {
  v1::Snapshot snapshot;
  for (int64_t id : {3, 5}) {
    snapshot.add_online_users(id);
    v1::UserPresence* user = snapshot.add_users();
    user->set_user_id(id);
    user->set_status(v1::STATUS_ONLINE);
    user->set_live_sessions(2);
    user->set_availability(v1::AVAILABILITY_AUTO);
  }
  internal::OnlinePart rich(true);
  rich.Reset(snapshot);
  v1::PresenceChange dnd;
  dnd.set_user_id(5);
  dnd.set_status(v1::STATUS_DND);
  dnd.set_reason(v1::REASON_STATUS_SET);
  dnd.mutable_availability_until()->set_seconds(1'800'000'000);
  dnd.mutable_custom_status()->set_text("Focus");
  rich.Apply(dnd);
  v1::PresenceChange away;
  away.set_user_id(1);  // came online since the snapshot
  away.set_status(v1::STATUS_AWAY);
  away.set_reason(v1::REASON_ACTIVITY);
  rich.Apply(away);
  v1::PresenceChange gone;
  gone.set_user_id(3);
  gone.set_status(v1::STATUS_OFFLINE);
  gone.set_reason(v1::REASON_EXPIRED);
  rich.Apply(gone);

  internal::OnlinePart other(true);
  v1::Snapshot old;  // from a presenced older than Snapshot.users
  old.add_online_users(4);
  other.Reset(old);

  google::protobuf::Timestamp at;
  at.set_seconds(42);
  const std::vector<const internal::OnlinePart*> parts = {&rich, &other};
  const v1::Snapshot merged = internal::OnlinePart::Merge(parts, at);
  EXPECT_THAT(merged.online_users(), ElementsAre(1, 4, 5));
  EXPECT_EQ(merged.server_time().seconds(), 42);
  ASSERT_EQ(merged.users_size(), 3);
  EXPECT_EQ(merged.users(0).ShortDebugString(),
            "user_id: 1 status: STATUS_AWAY availability: AVAILABILITY_AUTO");
  EXPECT_EQ(merged.users(1).ShortDebugString(),
            "user_id: 4 status: STATUS_ONLINE");
  EXPECT_EQ(merged.users(2).ShortDebugString(),
            "user_id: 5 status: STATUS_DND live_sessions: 2 availability: "
            "AVAILABILITY_DND availability_until { seconds: 1800000000 } "
            "custom_status { text: \"Focus\" }");

  // Without rich_status: ids only, whatever the changes say.
  internal::OnlinePart plain(false);
  plain.Reset(snapshot);
  plain.Apply(gone);
  plain.Apply(away);
  const v1::Snapshot ids = internal::OnlinePart::Merge({&plain}, at);
  EXPECT_THAT(ids.online_users(), ElementsAre(1, 5));
  EXPECT_EQ(ids.users_size(), 0);
}

TEST(ShardedClientOptionsTest, CreateRefusesAMalformedShardMap) {
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Create(Options("s0=127.0.0.1:1,s1="));
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<Client>> plain =
      Client::Create(Options("127.0.0.1:1"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE((*plain)->shard_map().sharded());
  absl::StatusOr<std::unique_ptr<Client>> pattern =
      Client::Create(Options("presenced-{0..2}.presenced.ns.svc:50051"));
  ASSERT_TRUE(pattern.ok()) << pattern.status();
  EXPECT_EQ((*pattern)->shard_map().size(), 3u);
  EXPECT_EQ((*pattern)->shard_map().shard(2).target,
            "presenced-2.presenced.ns.svc:50051");
}

}  // namespace
}  // namespace presence
