// presenced through gRPC: a real server on 127.0.0.1:0 with a real SQLite
// file, driven by presence::Client, with a fake clock for the time rules
// (tests/server_fixture.h). Its health and reflection services are in
// presence_server_test.cc, the client's Watcher in watcher_test.cc.

#include <memory>
#include <string>
#include <vector>

#include "SQLiteCpp/Database.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "service/presence_server.h"
#include "service/proto_time.h"
#include "tests/server_fixture.h"
#include "tests/test_util.h"
#include "tests/watch_stream.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;
using testing::WatchStream;

constexpr absl::Duration kWindow = absl::Minutes(5);

class ServiceTest : public testing::LoopbackServerTest {
 protected:
  v1::UserPresence Get(int64_t user) {
    const std::vector<int64_t> ids = {user};
    absl::StatusOr<v1::GetPresenceResponse> r = client_->GetPresence(ids);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->users_size() == 1 ? r->users(0) : v1::UserPresence();
  }

  std::vector<int64_t> Online() {
    absl::StatusOr<std::vector<int64_t>> r = client_->ListAllOnline();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<int64_t>{};
  }
};

TEST_F(ServiceTest, HeartbeatAnswersWithServerTimeWindowAndInterval) {
  const absl::Time now = clock_.Now();
  absl::StatusOr<v1::HeartbeatResponse> r = client_->Heartbeat(42, "tab-1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(FromProto(r->server_time()), now);
  EXPECT_EQ(FromProto(r->online_until()), now + kWindow);
  EXPECT_EQ(TimeUtil::DurationToSeconds(r->heartbeat_interval()), 120);
  EXPECT_TRUE(r->became_online());
  EXPECT_FALSE(client_->Heartbeat(42, "tab-1")->became_online());

  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.user_id(), 42);
  EXPECT_EQ(p.status(), v1::STATUS_ONLINE);
  EXPECT_EQ(p.live_sessions(), 1);
  EXPECT_EQ(FromProto(p.last_seen()), now);
  EXPECT_EQ(FromProto(p.online_until()), now + kWindow);
  EXPECT_EQ(Online(), std::vector<int64_t>{42});
}

TEST_F(ServiceTest, ClientTimeNeverDecidesPresence) {
  const absl::Time now = clock_.Now();
  for (absl::Time client_time :
       {absl::FromCivil(absl::CivilSecond(2099, 1, 1, 0, 0, 0),
                        absl::UTCTimeZone()),
        absl::UnixEpoch()}) {
    v1::HeartbeatRequest request;
    request.set_user_id(42);
    *request.mutable_client_time() = ToProto(client_time);
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(client_->stub().Heartbeat(&context, request, &response).ok());
    EXPECT_EQ(FromProto(response.server_time()), now);
    EXPECT_EQ(FromProto(response.online_until()), now + kWindow);
  }
  EXPECT_EQ(FromProto(Get(42).last_seen()), now);
  clock_.Advance(kWindow);
  EXPECT_EQ(Get(42).status(), v1::STATUS_OFFLINE);
}

TEST_F(ServiceTest, OfflineExactlyAtTheEndOfTheWindow) {
  const absl::Time t0 = clock_.Now();
  ASSERT_TRUE(client_->Heartbeat(42).ok());
  clock_.Set(t0 + kWindow - absl::Microseconds(1));
  EXPECT_EQ(Get(42).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(Online(), std::vector<int64_t>{42});
  clock_.Set(t0 + kWindow);
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_FALSE(p.has_online_until());
  EXPECT_EQ(FromProto(p.last_seen()), t0);
  EXPECT_TRUE(Online().empty());
}

TEST_F(ServiceTest, LogoutOnOneDeviceKeepsTheOtherOnline) {
  ASSERT_TRUE(client_->Heartbeat(42, "phone").ok());
  ASSERT_TRUE(client_->Heartbeat(42, "laptop").ok());
  clock_.Advance(absl::Seconds(7));
  absl::StatusOr<v1::MarkOfflineResponse> r =
      client_->MarkOffline(42, "laptop");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->still_online());
  EXPECT_EQ(r->sessions_ended(), 1);
  EXPECT_EQ(FromProto(r->server_time()), clock_.Now());
  EXPECT_EQ(Get(42).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(Get(42).live_sessions(), 1);
}

TEST_F(ServiceTest, LogoutEverywhereIsOfflineAtOnceWithLastSeen) {
  ASSERT_TRUE(client_->Heartbeat(42, "phone").ok());
  ASSERT_TRUE(client_->Heartbeat(42, "laptop").ok());
  clock_.Advance(absl::Seconds(7));
  const absl::Time logout = clock_.Now();
  absl::StatusOr<v1::MarkOfflineResponse> r = client_->MarkOffline(42);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->still_online());
  EXPECT_EQ(r->sessions_ended(), 2);
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(FromProto(p.last_seen()), logout);
  EXPECT_TRUE(Online().empty());
}

TEST_F(ServiceTest, NeverSeenUserIsOfflineWithoutLastSeen) {
  v1::UserPresence p = Get(12345);
  EXPECT_EQ(p.user_id(), 12345);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_FALSE(p.has_last_seen());
  EXPECT_EQ(p.live_sessions(), 0);
}

TEST_F(ServiceTest, GetPresenceKeepsRequestOrderAndHasServerTime) {
  ASSERT_TRUE(client_->Heartbeat(5).ok());
  const std::vector<int64_t> ids = {9, 5, 9};
  absl::StatusOr<v1::GetPresenceResponse> r = client_->GetPresence(ids);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->users_size(), 3);
  EXPECT_EQ(r->users(0).user_id(), 9);
  EXPECT_EQ(r->users(1).user_id(), 5);
  EXPECT_EQ(r->users(1).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(r->users(2).user_id(), 9);
  EXPECT_EQ(FromProto(r->server_time()), clock_.Now());
}

TEST_F(ServiceTest, ListOnlinePagesAscendingWithTotal) {
  std::vector<int64_t> expected;
  for (int64_t id = 25; id >= 1; --id) {
    ASSERT_TRUE(client_->Heartbeat(id * 3).ok());
  }
  for (int64_t id = 1; id <= 25; ++id) expected.push_back(id * 3);

  v1::ListOnlineRequest request;
  request.set_page_size(10);
  std::vector<int64_t> seen;
  int pages = 0;
  do {
    absl::StatusOr<v1::ListOnlineResponse> page = client_->ListOnline(request);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    EXPECT_EQ(page->total_online(), 25);
    EXPECT_EQ(FromProto(page->server_time()), clock_.Now());
    EXPECT_LE(page->online_users_size(), 10);
    seen.insert(seen.end(), page->online_users().begin(),
                page->online_users().end());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, expected);

  const std::vector<int64_t> only = {75, 4, 3};
  absl::StatusOr<std::vector<int64_t>> filtered = client_->ListAllOnline(only);
  ASSERT_TRUE(filtered.ok());
  EXPECT_EQ(*filtered, (std::vector<int64_t>{3, 75}));
}

TEST_F(ServiceTest, BadRequestsAreInvalidArgumentNamingTheField) {
  struct Case {
    absl::Status status;
    std::string field;
  };
  v1::ListOnlineRequest bad_token;
  bad_token.set_page_token("not-a-token");
  std::vector<int64_t> too_many(10'001, 1);
  const std::vector<int64_t> zero = {3, 0};
  std::vector<Case> cases = {
      {client_->Heartbeat(0).status(), "user_id"},
      {client_->Heartbeat(-1).status(), "user_id"},
      {client_->Heartbeat(1, std::string(129, 's')).status(), "session_id"},
      {client_->Heartbeat(1, "tab\x01").status(), "session_id"},
      {client_->MarkOffline(0).status(), "user_id"},
      {client_->ListOnline(bad_token).status(), "page_token"},
      {client_->GetPresence(too_many).status(), "user_ids"},
      {client_->GetPresence(zero).status(), "user_ids[1]"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.status;
    EXPECT_NE(c.status.message().find(c.field), absl::string_view::npos)
        << c.status;
  }
  EXPECT_TRUE(Online().empty());  // nothing was applied, server still serving
}

// Bytes that are not a valid request message: INVALID_ARGUMENT with
// protobuf's reason (gRPC's callback handlers would answer UNIMPLEMENTED with
// no message), nothing applied, and nothing on stderr per request.
TEST_F(ServiceTest, RequestsThatDoNotParseAreInvalidArgumentWithTheReason) {
  grpc::GenericStub stub(client_->channel());
  auto call = [&](const std::string& method, const std::string& bytes) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&context, "/presence.v1.PresenceService/" + method,
                   grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    return status;
  };
  struct Case {
    std::string method;
    std::string bytes;
    std::string message;
  };
  const std::string not_utf8 = std::string("\x08\x2a\x12\x02\xff\xfe", 6);
  for (const Case& c : {
           Case{"Heartbeat", not_utf8,
                "the request is not a valid presence.v1.HeartbeatRequest "
                "message: String field 'presence.v1.HeartbeatRequest."
                "session_id' contains invalid UTF-8 data"},
           Case{"Heartbeat", std::string("\x08\xff", 2),
                "not a valid presence.v1.HeartbeatRequest message: its "
                "protobuf encoding is truncated or malformed"},
           Case{"MarkOffline", std::string("\x12\x09short", 7),
                "not a valid presence.v1.MarkOfflineRequest"},
           Case{"GetPresence", std::string("\x0a\x05\x01", 3),
                "not a valid presence.v1.GetPresenceRequest"},
           Case{"BatchHeartbeat", std::string("\x0a\x06", 2),
                "not a valid presence.v1.BatchHeartbeatRequest"},
       }) {
    const grpc::Status status = call(c.method, c.bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.method << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.message), std::string::npos)
        << status.error_message();
  }
  EXPECT_TRUE(Online().empty());
  // The same bytes, valid: the server is fine.
  EXPECT_TRUE(call("Heartbeat", std::string("\x08\x2a", 2)).ok());
  EXPECT_EQ(Online(), std::vector<int64_t>{42});
}

TEST_F(ServiceTest, BatchHeartbeatAnswersEachItemInOrder) {
  ASSERT_TRUE(client_->Heartbeat(2).ok());
  v1::BatchHeartbeatRequest request;
  for (int64_t user : {1, 2, 0, 3}) {
    v1::HeartbeatRequest* item = request.add_heartbeats();
    item->set_user_id(user);
    item->set_session_id("tab");
  }
  request.mutable_heartbeats(3)->set_session_id(std::string(200, 'x'));
  absl::StatusOr<v1::BatchHeartbeatResponse> r =
      client_->BatchHeartbeat(request);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 4);
  EXPECT_TRUE(r->results(0).heartbeat().became_online());
  EXPECT_FALSE(r->results(1).heartbeat().became_online());  // was online
  EXPECT_EQ(FromProto(r->results(1).heartbeat().online_until()),
            clock_.Now() + kWindow);
  EXPECT_EQ(TimeUtil::DurationToSeconds(
                r->results(0).heartbeat().heartbeat_interval()),
            120);
  ASSERT_TRUE(r->results(2).has_error());
  EXPECT_EQ(r->results(2).error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r->results(2).error().message().find("heartbeats[2].user_id"),
            std::string::npos)
      << r->results(2).error().message();
  ASSERT_TRUE(r->results(3).has_error());
  EXPECT_NE(r->results(3).error().message().find("heartbeats[3].session_id"),
            std::string::npos);
  EXPECT_EQ(FromProto(r->server_time()), clock_.Now());
  EXPECT_EQ(Online(), (std::vector<int64_t>{1, 2}));  // 3 was refused

  // Durable when answered, like a single Heartbeat.
  SQLite::Database db(dir_.File("presence.db"), SQLite::OPEN_READONLY);
  EXPECT_EQ(
      db.execAndGet("SELECT COUNT(*) FROM sessions WHERE user_id = 1").getInt(),
      1);
}

TEST_F(ServiceTest, BatchHeartbeatOverTheLimitIsRefusedWhole) {
  v1::BatchHeartbeatRequest request;
  for (int i = 1; i <= 10'001; ++i) request.add_heartbeats()->set_user_id(i);
  absl::StatusOr<v1::BatchHeartbeatResponse> r =
      client_->BatchHeartbeat(request);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("heartbeats"), absl::string_view::npos);
  EXPECT_TRUE(Online().empty());
}

TEST_F(ServiceTest, ChangeIsInSqliteWhenTheAnswerArrives) {
  ASSERT_TRUE(client_->Heartbeat(42, "tab").ok());
  SQLite::Database db(dir_.File("presence.db"), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT last_heartbeat_us FROM sessions "
                          "WHERE user_id = 42 AND session_id = 'tab'")
                .getInt64(),
            absl::ToUnixMicros(clock_.Now()));

  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(client_->MarkOffline(42).ok());
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM sessions").getInt(), 0);
  EXPECT_EQ(db.execAndGet("SELECT last_seen_us FROM users WHERE user_id = 42")
                .getInt64(),
            absl::ToUnixMicros(clock_.Now()));
}

TEST_F(ServiceTest, StateSurvivesAGracefulRestart) {
  ASSERT_TRUE(client_->Heartbeat(42, "tab").ok());
  const absl::Time hb = clock_.Now();
  ASSERT_TRUE(client_->Heartbeat(7).ok());
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(client_->MarkOffline(7).ok());
  const absl::Time logout = clock_.Now();
  ASSERT_TRUE(server_->Shutdown().ok());
  client_.reset();
  server_.reset();

  clock_.Advance(absl::Minutes(1));
  Start();
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_ONLINE);
  EXPECT_EQ(FromProto(p.online_until()), hb + kWindow);
  EXPECT_EQ(Get(7).status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(FromProto(Get(7).last_seen()), logout);
}

TEST_F(ServiceTest, ExpiredWhileDownIsOfflineAfterRestartWithLastSeen) {
  ASSERT_TRUE(client_->Heartbeat(42).ok());
  const absl::Time hb = clock_.Now();
  client_.reset();
  server_.reset();
  clock_.Advance(kWindow + absl::Hours(1));
  Start();
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(FromProto(p.last_seen()), hb);
}

// WatchPresence over real streams.

class WatchTest : public ServiceTest {
 protected:
  std::unique_ptr<WatchStream> Watch(const std::vector<int64_t>& users,
                                     bool snapshot = true,
                                     uint64_t resume_after = 0,
                                     const std::string& epoch = "",
                                     uint32_t max_batch = 0) {
    v1::WatchPresenceRequest request;
    request.set_max_batch(max_batch);
    request.mutable_user_ids()->Add(users.begin(), users.end());
    request.set_send_snapshot(snapshot);
    request.set_resume_after(resume_after);
    request.set_epoch(epoch);
    return testing::StartWatch(client_->stub(), request);
  }

  static std::vector<int64_t> Users(const v1::WatchPresenceResponse& m) {
    return {m.snapshot().online_users().begin(),
            m.snapshot().online_users().end()};
  }

  // Brings users first..last online with one BatchHeartbeat, in that order:
  // their ONLINE changes get consecutive sequences.
  void HeartbeatUsers(int64_t first, int64_t last) {
    v1::BatchHeartbeatRequest request;
    for (int64_t user = first; user <= last; ++user) {
      request.add_heartbeats()->set_user_id(user);
    }
    grpc::ClientContext context;
    v1::BatchHeartbeatResponse response;
    ASSERT_TRUE(
        client_->stub().BatchHeartbeat(&context, request, &response).ok());
  }

  // The server's current (epoch, sequence), from the stream's snapshot.
  static std::pair<std::string, uint64_t> Head(WatchStream* stream) {
    v1::WatchPresenceResponse snapshot = stream->Next();
    EXPECT_TRUE(snapshot.has_snapshot());
    return {snapshot.epoch(), snapshot.sequence()};
  }
};

TEST_F(WatchTest, SnapshotThenOneChangePerTransition) {
  ASSERT_TRUE(client_->Heartbeat(1).ok());
  auto stream = Watch({});
  v1::WatchPresenceResponse first = stream->Next();
  ASSERT_TRUE(first.has_snapshot());
  EXPECT_EQ(Users(first), std::vector<int64_t>{1});
  EXPECT_EQ(FromProto(first.snapshot().server_time()), clock_.Now());
  EXPECT_FALSE(first.epoch().empty());

  ASSERT_TRUE(client_->Heartbeat(2, "a").ok());
  ASSERT_TRUE(client_->Heartbeat(2, "b").ok());    // already online: nothing
  ASSERT_TRUE(client_->Heartbeat(1).ok());         // already online: nothing
  ASSERT_TRUE(client_->MarkOffline(2, "a").ok());  // b still live: nothing
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(client_->MarkOffline(2).ok());

  v1::WatchPresenceResponse online = stream->Next();
  EXPECT_EQ(online.sequence(), first.sequence() + 1);
  EXPECT_EQ(online.epoch(), first.epoch());
  EXPECT_EQ(online.change().user_id(), 2);
  EXPECT_EQ(online.change().status(), v1::STATUS_ONLINE);
  EXPECT_EQ(online.change().reason(), v1::REASON_HEARTBEAT);
  v1::WatchPresenceResponse offline = stream->Next();
  EXPECT_EQ(offline.sequence(), first.sequence() + 2);
  EXPECT_EQ(offline.change().user_id(), 2);
  EXPECT_EQ(offline.change().status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(offline.change().reason(), v1::REASON_MARK_OFFLINE);
  EXPECT_EQ(FromProto(offline.change().at()), clock_.Now());
}

TEST_F(WatchTest, TwoWatchersWithDifferentFilters) {
  auto ones = Watch({1, 3});
  auto twos = Watch({2});
  EXPECT_TRUE(ones->Next().has_snapshot());
  EXPECT_TRUE(twos->Next().has_snapshot());
  for (int64_t user : {1, 2, 3, 4}) ASSERT_TRUE(client_->Heartbeat(user).ok());
  ASSERT_TRUE(client_->MarkOffline(2).ok());
  EXPECT_EQ(ones->Next().change().user_id(), 1);
  EXPECT_EQ(ones->Next().change().user_id(), 3);
  v1::WatchPresenceResponse two = twos->Next();
  EXPECT_EQ(two.change().user_id(), 2);
  EXPECT_EQ(two.change().status(), v1::STATUS_ONLINE);
  EXPECT_EQ(twos->Next().change().status(), v1::STATUS_OFFLINE);
}

TEST_F(WatchTest, ADisconnectedWatcherResumesWithoutLossOrSnapshot) {
  auto stream = Watch({});
  const v1::WatchPresenceResponse snapshot = stream->Next();
  ASSERT_TRUE(client_->Heartbeat(1).ok());
  const v1::WatchPresenceResponse seen = stream->Next();
  stream->context.TryCancel();
  stream->reader->Finish().IgnoreError();
  stream.reset();

  ASSERT_TRUE(client_->Heartbeat(2).ok());
  ASSERT_TRUE(client_->MarkOffline(1).ok());
  auto resumed = Watch({}, /*snapshot=*/false, seen.sequence(), seen.epoch());
  v1::WatchPresenceResponse a = resumed->Next();
  v1::WatchPresenceResponse b = resumed->Next();
  ASSERT_TRUE(a.has_change());
  EXPECT_EQ(a.sequence(), seen.sequence() + 1);
  EXPECT_EQ(a.change().user_id(), 2);
  EXPECT_EQ(b.sequence(), seen.sequence() + 2);
  EXPECT_EQ(b.change().user_id(), 1);
  EXPECT_EQ(b.change().status(), v1::STATUS_OFFLINE);
}

TEST_F(WatchTest, ResumeFromAnotherEpochStartsWithASnapshot) {
  ASSERT_TRUE(client_->Heartbeat(5).ok());
  auto stream = Watch({}, /*snapshot=*/false, 3, "ffffffffffffffff");
  v1::WatchPresenceResponse first = stream->Next();
  ASSERT_TRUE(first.has_snapshot());
  EXPECT_EQ(Users(first), std::vector<int64_t>{5});
  EXPECT_NE(first.epoch(), "ffffffffffffffff");
}

TEST_F(WatchTest, ExpiryIsStreamedAtTheEndOfTheWindow) {
  const absl::Time t0 = clock_.Now();
  ASSERT_TRUE(client_->Heartbeat(42).ok());
  auto stream = Watch({42});
  EXPECT_EQ(Users(stream->Next()), std::vector<int64_t>{42});
  clock_.Set(t0 + kWindow);  // the sweeper notices within 100 ms
  v1::WatchPresenceResponse expired = stream->Next();
  EXPECT_EQ(expired.change().user_id(), 42);
  EXPECT_EQ(expired.change().status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(expired.change().reason(), v1::REASON_EXPIRED);
  EXPECT_EQ(FromProto(expired.change().at()), t0 + kWindow);
}

TEST_F(WatchTest, EveryChangeOfManyUsersArrivesInOrder) {
  auto stream = Watch({});
  // The snapshot says the watch is registered: no change can be missed now.
  ASSERT_TRUE(stream->Next().has_snapshot());
  for (int64_t user = 1; user <= 1000; ++user) {
    ASSERT_TRUE(client_->Heartbeat(user).ok());
  }
  uint64_t last = 0;
  for (int64_t user = 1; user <= 1000; ++user) {
    v1::WatchPresenceResponse m = stream->Next();
    ASSERT_EQ(m.change().user_id(), user);
    if (last != 0) {
      EXPECT_EQ(m.sequence(), last + 1);
    }
    last = m.sequence();
  }
}

TEST_F(WatchTest, WaitingChangesComeInBatchesOfAtMostMaxBatch) {
  auto probe = Watch({});
  const auto [epoch, start] = Head(probe.get());
  HeartbeatUsers(1, 10);
  // Resuming from before them: all ten are waiting when the stream starts.
  auto stream = Watch({}, false, start, epoch, /*max_batch=*/4);
  uint64_t expected = start + 1;
  for (size_t size : {4u, 4u, 2u}) {
    v1::WatchPresenceResponse m = stream->Next();
    ASSERT_TRUE(m.has_changes()) << m.DebugString();
    ASSERT_EQ(static_cast<size_t>(m.changes().changes_size()), size);
    for (const v1::PresenceChange& change : m.changes().changes()) {
      EXPECT_EQ(change.sequence(), expected);
      EXPECT_EQ(change.user_id(), static_cast<int64_t>(expected - start));
      EXPECT_EQ(change.status(), v1::STATUS_ONLINE);
      ++expected;
    }
    EXPECT_EQ(m.sequence(), expected - 1);
    EXPECT_EQ(m.epoch(), epoch);
  }
  // Idle now: the next change comes alone, still in the batch form.
  ASSERT_TRUE(client_->MarkOffline(3).ok());
  v1::WatchPresenceResponse m = stream->Next();
  ASSERT_EQ(m.changes().changes_size(), 1);
  EXPECT_EQ(m.changes().changes(0).user_id(), 3);
  EXPECT_EQ(m.changes().changes(0).status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(m.sequence(), start + 11);
}

TEST_F(WatchTest, AStreamThatDoesNotAskForBatchesGetsOneChangePerMessage) {
  auto probe = Watch({});
  const auto [epoch, start] = Head(probe.get());
  HeartbeatUsers(1, 5);
  for (uint32_t max_batch : {0u, 1u}) {
    auto stream = Watch({}, false, start, epoch, max_batch);
    for (uint64_t s = start + 1; s <= start + 5; ++s) {
      v1::WatchPresenceResponse m = stream->Next();
      ASSERT_TRUE(m.has_change()) << m.DebugString();
      EXPECT_EQ(m.sequence(), s);
      EXPECT_EQ(m.change().sequence(), s);
    }
  }
}

TEST_F(WatchTest, MaxBatchIsCappedAtAThousand) {
  auto probe = Watch({});
  const auto [epoch, start] = Head(probe.get());
  HeartbeatUsers(1, 1500);
  auto stream = Watch({}, false, start, epoch, 1'000'000);
  v1::WatchPresenceResponse first = stream->Next();
  ASSERT_EQ(first.changes().changes_size(), 1000);
  EXPECT_LT(first.ByteSizeLong(), 40u * 1024);
  v1::WatchPresenceResponse second = stream->Next();
  ASSERT_EQ(second.changes().changes_size(), 500);
  EXPECT_EQ(second.sequence(), start + 1500);
}

TEST_F(WatchTest, AFilteredStreamBatchesOnlyItsUsers) {
  auto probe = Watch({});
  const auto [epoch, start] = Head(probe.get());
  HeartbeatUsers(1, 6);
  auto stream = Watch({2, 5, 6}, false, start, epoch, 100);
  v1::WatchPresenceResponse m = stream->Next();
  ASSERT_EQ(m.changes().changes_size(), 3);
  std::vector<uint64_t> sequences;
  for (const auto& change : m.changes().changes()) {
    sequences.push_back(change.sequence());
  }
  EXPECT_EQ(sequences,
            (std::vector<uint64_t>{start + 2, start + 5, start + 6}));
  EXPECT_EQ(m.sequence(), start + 6);
}

// A watcher of everyone that stops reading: the server stops writing to it
// once gRPC's flow control is full, its cursor falls off a small ring, and
// when it reads again it gets what was buffered and a snapshot wherever it
// had fallen off, with no gap, ending with everyone online; then live
// changes again.
TEST_F(WatchTest, AStalledWatcherOfEveryoneGetsOneSnapshotOffTheRing) {
  client_.reset();
  server_.reset();
  ServerOptions options;
  options.watch.ring_size = 64;
  Start(options);
  auto stream = Watch({}, /*snapshot=*/true, 0, "", /*max_batch=*/1);
  ASSERT_TRUE(stream->Next().has_snapshot());
  // Far more than any flow-control window holds, in one-change messages.
  constexpr int64_t kUsers = 100'000;
  for (int64_t first = 1; first <= kUsers; first += 10'000) {
    HeartbeatUsers(first, first + 9'999);
  }
  // Reading now: what gRPC had buffered, then snapshots wherever the
  // stream fell off the ring, never a gap between them.
  absl::flat_hash_set<int64_t> online;
  uint64_t last = 0;
  int snapshots = 0;
  while (last < static_cast<uint64_t>(kUsers)) {
    v1::WatchPresenceResponse m = stream->Next();
    if (m.has_snapshot()) {
      ++snapshots;
      online.clear();
      online.insert(m.snapshot().online_users().begin(),
                    m.snapshot().online_users().end());
    } else {
      ASSERT_TRUE(m.has_change()) << m.DebugString();
      ASSERT_EQ(m.sequence(), last + 1);
      ASSERT_EQ(m.change().status(), v1::STATUS_ONLINE);
      online.insert(m.change().user_id());
    }
    ASSERT_GT(m.sequence(), last);
    last = m.sequence();
  }
  EXPECT_GE(snapshots, 1);  // it did fall off the ring
  EXPECT_EQ(online.size(), static_cast<size_t>(kUsers));
  ASSERT_TRUE(client_->MarkOffline(7).ok());
  v1::WatchPresenceResponse after = stream->Next();
  EXPECT_EQ(after.change().user_id(), 7);
  EXPECT_EQ(after.sequence(), last + 1);
}

TEST_F(WatchTest, ShutdownEndsEveryStreamPromptlyWithUnavailable) {
  auto a = Watch({});
  auto b = Watch({7});
  ASSERT_TRUE(a->Next().has_snapshot());
  ASSERT_TRUE(b->Next().has_snapshot());
  const absl::Time start = absl::Now();
  ASSERT_TRUE(server_->Shutdown(absl::Seconds(60)).ok());
  // Not the 60 s grace: the streams were ended, not waited for.
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  for (WatchStream* stream : {a.get(), b.get()}) {
    v1::WatchPresenceResponse message;
    EXPECT_FALSE(stream->reader->Read(&message));
    grpc::Status status = stream->reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(status.error_message().find("shutting down"), std::string::npos);
  }
}

TEST_F(WatchTest, WatchersBeyondTheLimitAreResourceExhausted) {
  client_.reset();
  server_.reset();
  ServerOptions options;
  options.watch.max_watchers = 1;
  Start(options);
  auto first = Watch({});
  ASSERT_TRUE(first->Next().has_snapshot());
  auto second = Watch({});
  v1::WatchPresenceResponse message;
  EXPECT_FALSE(second->reader->Read(&message));
  grpc::Status status = second->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("--max_watchers"), std::string::npos);
}

TEST_F(WatchTest, BadWatchRequestsAreInvalidArgument) {
  struct Case {
    std::unique_ptr<WatchStream> stream;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({Watch({4, 0}), "user_ids[1]"});
  cases.push_back({Watch({}, false, 12, ""), "epoch"});
  for (Case& c : cases) {
    v1::WatchPresenceResponse message;
    EXPECT_FALSE(c.stream->reader->Read(&message));
    grpc::Status status = c.stream->reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find(c.field), std::string::npos)
        << status.error_message();
  }
}

// The one test on the real clock: a 1 s window really ends.
TEST(ServiceRealClockTest, UserGoesOfflineWhenTheRealWindowEnds) {
  testing::TempDir dir;
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("presence.db");
  options.online_window = absl::Seconds(1);
  options.heartbeat_interval = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<PresenceServer>> server =
      PresenceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions client_options;
  client_options.target = (*server)->address();
  Client client(client_options);

  absl::StatusOr<v1::HeartbeatResponse> hb = client.Heartbeat(42);
  ASSERT_TRUE(hb.ok()) << hb.status();
  const absl::Time online_until = FromProto(hb->online_until());
  EXPECT_EQ(online_until - FromProto(hb->server_time()), absl::Seconds(1));

  // Poll until the server reports offline; every answer before online_until
  // must say online, every answer from then on offline.
  const std::vector<int64_t> ids = {42};
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  bool offline = false;
  while (!offline && absl::Now() < give_up) {
    absl::StatusOr<v1::GetPresenceResponse> r = client.GetPresence(ids);
    ASSERT_TRUE(r.ok()) << r.status();
    const bool before_end = FromProto(r->server_time()) < online_until;
    offline = r->users(0).status() == v1::STATUS_OFFLINE;
    EXPECT_EQ(offline, !before_end)
        << "server_time " << FromProto(r->server_time()) << " online_until "
        << online_until;
    if (!offline) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(offline) << "still online 10 s after a 1 s window";
}

}  // namespace
}  // namespace presence
