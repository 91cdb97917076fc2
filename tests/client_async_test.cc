// presence::Client's asynchronous calls against a real presenced: they answer
// like the blocking ones, carry presenced's errors, keep the client's
// deadline, and run every callback exactly once, even when the Client is
// destroyed before its calls end. And presence::Watcher's reading of
// batched streams, with a proxy that breaks them.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "presence/watcher.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using testing::Await;

using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::RunningPresenced;
using testing::StartPresenced;
using testing::TempDir;

// Long enough for the slowest sanitizer build, short enough to fail a test
// whose callback never comes.
constexpr absl::Duration kWait = absl::Seconds(60);

// What the callbacks of many asynchronous calls reported. Shared with the
// callbacks, so that one arriving after a failed test harms nothing.
class Tally {
 public:
  explicit Tally(int calls) : runs_(calls, 0), statuses_(calls) {}

  // The callback of call `i`, which records its status (and, with
  // `on_value`, its value).
  template <typename T>
  static Client::Callback<T> For(
      std::shared_ptr<Tally> tally, int i,
      std::function<void(const T&)> on_value = nullptr) {
    return [tally = std::move(tally), i,
            on_value = std::move(on_value)](absl::StatusOr<T> result) {
      if (result.ok() && on_value != nullptr) on_value(*result);
      absl::MutexLock lock(&tally->mu_);
      if (tally->runs_[i]++ == 0) ++tally->finished_;
      tally->statuses_[i] = result.status();
    };
  }

  // Whether every call reported within `timeout`.
  bool AwaitAll(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Tally* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
              return t->finished_ == static_cast<int>(t->runs_.size());
            },
            this),
        timeout);
  }

  std::vector<int> runs() {
    absl::MutexLock lock(&mu_);
    return runs_;
  }
  std::vector<absl::Status> statuses() {
    absl::MutexLock lock(&mu_);
    return statuses_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int> runs_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
  int finished_ ABSL_GUARDED_BY(mu_) = 0;
};

// A TCP listener on 127.0.0.1 that never accepts and never answers: the
// kernel completes connections into its backlog, so a call neither fails
// nor completes, and only its deadline ends it.
class SilentServer {
 public:
  SilentServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(fd_, 1024) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    address_ = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  }
  ~SilentServer() {
    if (fd_ >= 0) close(fd_);
  }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;

  const std::string& address() const { return address_; }

 private:
  int fd_ = -1;
  std::string address_;
};

ClientOptions Options(const std::string& address,
                      absl::Duration deadline = absl::Seconds(30)) {
  ClientOptions options;
  options.target = address;
  options.deadline = deadline;
  return options;
}

std::vector<int64_t> Range(int64_t first, int64_t last) {
  std::vector<int64_t> ids(last - first + 1);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

v1::BatchHeartbeatRequest Batch(const std::vector<int64_t>& users) {
  v1::BatchHeartbeatRequest request;
  for (int64_t user : users) request.add_heartbeats()->set_user_id(user);
  return request;
}

// `message` without the fields that depend on when it was answered.
template <typename Message>
Message Timeless(Message message) {
  message.clear_server_time();
  return message;
}

v1::HeartbeatResponse Timeless(v1::HeartbeatResponse response) {
  response.clear_server_time();
  response.clear_online_until();
  return response;
}

v1::BatchHeartbeatResponse Timeless(v1::BatchHeartbeatResponse response) {
  response.clear_server_time();
  for (v1::BatchHeartbeatResult& result : *response.mutable_results()) {
    if (result.has_heartbeat()) {
      *result.mutable_heartbeat() = Timeless(result.heartbeat());
    }
  }
  return response;
}

int64_t WindowMicros(const v1::HeartbeatResponse& response) {
  return TimeUtil::TimestampToMicroseconds(response.online_until()) -
         TimeUtil::TimestampToMicroseconds(response.server_time());
}

class ClientAsyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartPresenced({"--db=" + dir_.File("presence.db")});
    ASSERT_FALSE(server_.address.empty());
    client_ = std::make_unique<Client>(Options(server_.address));
  }

  TempDir dir_;
  RunningPresenced server_;
  std::unique_ptr<Client> client_;
};

// A caller that builds its own channel keeps the client's retries by passing
// Client::ServiceConfigJson(): its channel then holds the very config the
// client's own channels hold, the retry policy included.
TEST_F(ClientAsyncTest, ACallersOwnChannelGetsTheClientsServiceConfig) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(Client::ServiceConfigJson());
  Client own(grpc::CreateCustomChannel(
      server_.address, grpc::InsecureChannelCredentials(), args));
  // The config is applied once the channel has resolved its target.
  ASSERT_TRUE(own.Heartbeat(1).ok());
  ASSERT_TRUE(client_->Heartbeat(2).ok());
  const std::string applied = own.channel()->GetServiceConfigJSON();
  EXPECT_EQ(applied, client_->channel()->GetServiceConfigJSON());
  EXPECT_THAT(applied, ::testing::HasSubstr("\"retryPolicy\""));
  EXPECT_THAT(applied, ::testing::HasSubstr("\"SetStatus\""));
}

// Each pair changes different users the same way, so that the answers differ
// only in their times.
TEST_F(ClientAsyncTest, EachAsyncCallAnswersLikeItsBlockingTwin) {
  Client& client = *client_;

  absl::StatusOr<v1::HeartbeatResponse> async_beat =
      Await<v1::HeartbeatResponse>(
          [&](auto done) { client.HeartbeatAsync(1, "tab", std::move(done)); });
  absl::StatusOr<v1::HeartbeatResponse> beat = client.Heartbeat(2, "tab");
  ASSERT_TRUE(async_beat.ok()) << async_beat.status();
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_TRUE(async_beat->became_online());
  EXPECT_TRUE(
      MessageDifferencer::Equals(Timeless(*async_beat), Timeless(*beat)))
      << async_beat->DebugString() << " vs " << beat->DebugString();
  EXPECT_EQ(WindowMicros(*async_beat), WindowMicros(*beat));

  // With one bad item, which fails alone.
  absl::StatusOr<v1::BatchHeartbeatResponse> async_batch =
      Await<v1::BatchHeartbeatResponse>([&](auto done) {
        client.BatchHeartbeatAsync(Batch({3, 0}), std::move(done));
      });
  absl::StatusOr<v1::BatchHeartbeatResponse> batch =
      client.BatchHeartbeat(Batch({4, 0}));
  ASSERT_TRUE(async_batch.ok()) << async_batch.status();
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(async_batch->results_size(), 2);
  EXPECT_TRUE(async_batch->results(0).heartbeat().became_online());
  EXPECT_EQ(async_batch->results(1).error().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(
      MessageDifferencer::Equals(Timeless(*async_batch), Timeless(*batch)))
      << async_batch->DebugString() << " vs " << batch->DebugString();

  absl::StatusOr<v1::MarkOfflineResponse> async_offline =
      Await<v1::MarkOfflineResponse>([&](auto done) {
        client.MarkOfflineAsync(1, "tab", std::move(done));
      });
  absl::StatusOr<v1::MarkOfflineResponse> offline =
      client.MarkOffline(2, "tab");
  ASSERT_TRUE(async_offline.ok()) << async_offline.status();
  ASSERT_TRUE(offline.ok()) << offline.status();
  EXPECT_EQ(async_offline->sessions_ended(), 1);
  EXPECT_FALSE(async_offline->still_online());
  EXPECT_TRUE(
      MessageDifferencer::Equals(Timeless(*async_offline), Timeless(*offline)));

  // Users 3 and 4 are online now; reads change nothing, so they agree.
  v1::ListOnlineRequest list;
  list.set_page_size(1);
  absl::StatusOr<v1::ListOnlineResponse> async_page =
      Await<v1::ListOnlineResponse>(
          [&](auto done) { client.ListOnlineAsync(list, std::move(done)); });
  absl::StatusOr<v1::ListOnlineResponse> page = client.ListOnline(list);
  ASSERT_TRUE(async_page.ok()) << async_page.status();
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(async_page->online_users(), ElementsAre(3));
  EXPECT_FALSE(async_page->next_page_token().empty());
  EXPECT_TRUE(
      MessageDifferencer::Equals(Timeless(*async_page), Timeless(*page)))
      << async_page->DebugString() << " vs " << page->DebugString();

  absl::StatusOr<std::vector<int64_t>> async_all = Await<std::vector<int64_t>>(
      [&](auto done) { client.ListAllOnlineAsync({}, std::move(done)); });
  ASSERT_TRUE(async_all.ok()) << async_all.status();
  EXPECT_THAT(*async_all, ElementsAre(3, 4));
  EXPECT_EQ(*async_all, client.ListAllOnline().value());

  const std::vector<int64_t> ids = Range(1, 5);
  absl::StatusOr<v1::GetPresenceResponse> async_presence =
      Await<v1::GetPresenceResponse>(
          [&](auto done) { client.GetPresenceAsync(ids, std::move(done)); });
  absl::StatusOr<v1::GetPresenceResponse> presence = client.GetPresence(ids);
  ASSERT_TRUE(async_presence.ok()) << async_presence.status();
  ASSERT_TRUE(presence.ok()) << presence.status();
  ASSERT_EQ(async_presence->users_size(), 5);
  EXPECT_EQ(async_presence->users(2).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(async_presence->users(0).status(), v1::STATUS_OFFLINE);
  EXPECT_TRUE(MessageDifferencer::Equals(Timeless(*async_presence),
                                         Timeless(*presence)))
      << async_presence->DebugString() << " vs " << presence->DebugString();
}

TEST_F(ClientAsyncTest, ErrorsCarryPresencedsCodeAndMessage) {
  Client& client = *client_;
  v1::ListOnlineRequest negative_page;
  negative_page.set_page_size(-1);
  v1::ListOnlineRequest bad_token;
  bad_token.set_page_token("not a token");
  struct Case {
    std::string name;
    std::function<absl::Status()> async;
    std::function<absl::Status()> blocking;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"Heartbeat user 0",
       [&] {
         return Await<v1::HeartbeatResponse>([&](auto done) {
                  client.HeartbeatAsync(0, "", std::move(done));
                })
             .status();
       },
       [&] { return client.Heartbeat(0).status(); }, "user_id must be > 0"},
      {"Heartbeat unprintable session",
       [&] {
         return Await<v1::HeartbeatResponse>([&](auto done) {
                  client.HeartbeatAsync(7, "tab\x01", std::move(done));
                })
             .status();
       },
       [&] { return client.Heartbeat(7, "tab\x01").status(); },
       "session_id must be printable ASCII"},
      {"BatchHeartbeat too many",
       [&] {
         return Await<v1::BatchHeartbeatResponse>([&](auto done) {
                  client.BatchHeartbeatAsync(Batch(Range(1, 10'001)),
                                             std::move(done));
                })
             .status();
       },
       [&] { return client.BatchHeartbeat(Batch(Range(1, 10'001))).status(); },
       "heartbeats has 10001 items"},
      {"MarkOffline user -1",
       [&] {
         return Await<v1::MarkOfflineResponse>([&](auto done) {
                  client.MarkOfflineAsync(-1, "", std::move(done));
                })
             .status();
       },
       [&] { return client.MarkOffline(-1).status(); }, "user_id must be > 0"},
      {"ListOnline negative page",
       [&] {
         return Await<v1::ListOnlineResponse>([&](auto done) {
                  client.ListOnlineAsync(negative_page, std::move(done));
                })
             .status();
       },
       [&] { return client.ListOnline(negative_page).status(); },
       "page_size must be >= 0"},
      {"ListOnline bad token",
       [&] {
         return Await<v1::ListOnlineResponse>([&](auto done) {
                  client.ListOnlineAsync(bad_token, std::move(done));
                })
             .status();
       },
       [&] { return client.ListOnline(bad_token).status(); }, "page_token"},
      {"ListAllOnline user 0",
       [&] {
         return Await<std::vector<int64_t>>([&](auto done) {
                  client.ListAllOnlineAsync({5, 0}, std::move(done));
                })
             .status();
       },
       [&] {
         return client.ListAllOnline({5, 0}).status();
       },
       "user_ids[1] must be > 0, got 0"},
      {"GetPresence user 0",
       [&] {
         return Await<v1::GetPresenceResponse>([&](auto done) {
                  client.GetPresenceAsync({0}, std::move(done));
                })
             .status();
       },
       [&] { return client.GetPresence({0}).status(); },
       "user_ids[0] must be > 0, got 0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::Status async = c.async();
    EXPECT_EQ(async.code(), absl::StatusCode::kInvalidArgument) << async;
    EXPECT_THAT(std::string(async.message()), HasSubstr(c.message));
    EXPECT_EQ(async, c.blocking());
  }
}

// Against a server that never answers, each call ends at its deadline, not
// before and not much after.
TEST(ClientAsyncDeadlineTest, EveryCallEndsAtTheClientsDeadline) {
  SilentServer silent;
  ASSERT_FALSE(silent.address().empty());
  constexpr absl::Duration kDeadline = absl::Milliseconds(400);
  constexpr absl::Duration kMargin = absl::Seconds(3);
  Client client(Options(silent.address(), kDeadline));

  struct Case {
    std::string name;
    std::function<absl::Status()> call;
  };
  const std::vector<Case> cases = {
      {"HeartbeatAsync",
       [&] {
         return Await<v1::HeartbeatResponse>([&](auto done) {
                  client.HeartbeatAsync(1, "", std::move(done));
                })
             .status();
       }},
      {"Heartbeat", [&] { return client.Heartbeat(1).status(); }},
      {"MarkOfflineAsync",
       [&] {
         return Await<v1::MarkOfflineResponse>([&](auto done) {
                  client.MarkOfflineAsync(1, "", std::move(done));
                })
             .status();
       }},
      {"ListAllOnlineAsync",
       [&] {
         return Await<std::vector<int64_t>>([&](auto done) {
                  client.ListAllOnlineAsync({}, std::move(done));
                })
             .status();
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const absl::Time start = absl::Now();
    absl::Status status = c.call();
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
    EXPECT_GE(took, kDeadline - absl::Milliseconds(5));
    EXPECT_LT(took, kDeadline + kMargin);
  }
}

// A deadline given to one call wins over the client's: a liveness check can
// fail in a fraction of the client's 60 s.
TEST(ClientAsyncDeadlineTest, ACallsOwnDeadlineWinsOverTheClients) {
  SilentServer silent;
  ASSERT_FALSE(silent.address().empty());
  Client client(Options(silent.address(), absl::Seconds(60)));
  constexpr absl::Duration kDeadline = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::ListOnlineResponse> page =
      Await<v1::ListOnlineResponse>([&](auto done) {
        client.ListOnlineAsync({}, kDeadline, std::move(done));
      });
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(page.status().code(), absl::StatusCode::kDeadlineExceeded)
      << page.status();
  EXPECT_GE(took, kDeadline - absl::Milliseconds(5));
  EXPECT_LT(took, absl::Seconds(5));
}

// What one WatchPresenceAsync stream delivered, for the test to wait on.
struct WatchLog {
  absl::Mutex mu;
  std::vector<v1::WatchPresenceResponse> messages ABSL_GUARDED_BY(mu);
  int done_calls ABSL_GUARDED_BY(mu) = 0;
  absl::Status status ABSL_GUARDED_BY(mu);

  size_t wanted ABSL_GUARDED_BY(mu) = 0;

  bool AwaitMessages(size_t count) {
    absl::MutexLock lock(&mu);
    wanted = count;
    return mu.AwaitWithTimeout(
        absl::Condition(
            +[](WatchLog* log) ABSL_EXCLUSIVE_LOCKS_REQUIRED(log->mu) {
              return log->messages.size() >= log->wanted;
            },
            this),
        kWait);
  }
};

// The stream delivers the snapshot and then each change, in order; cancelling
// its context ends it with one on_done, CANCELLED.
TEST_F(ClientAsyncTest, WatchPresenceAsyncDeliversInOrderUntilCancelled) {
  auto log = std::make_shared<WatchLog>();
  absl::Notification ended;
  auto context = std::make_shared<grpc::ClientContext>();
  v1::WatchPresenceRequest request;
  request.set_send_snapshot(true);
  ASSERT_TRUE(client_->Heartbeat(7).ok());
  client_->WatchPresenceAsync(
      context, request,
      [log](v1::WatchPresenceResponse message) {
        absl::MutexLock lock(&log->mu);
        log->messages.push_back(std::move(message));
      },
      [log, &ended](absl::Status status) {
        {
          absl::MutexLock lock(&log->mu);
          ++log->done_calls;
          log->status = std::move(status);
        }
        ended.Notify();
      });
  // The snapshot first: a heartbeat sent before presenced has registered
  // the watcher would be in the snapshot, not a change of its own.
  ASSERT_TRUE(log->AwaitMessages(1));
  ASSERT_TRUE(client_->Heartbeat(8).ok());
  ASSERT_TRUE(log->AwaitMessages(2));
  {
    absl::MutexLock lock(&log->mu);
    ASSERT_TRUE(log->messages[0].has_snapshot());
    EXPECT_THAT(log->messages[0].snapshot().online_users(),
                ::testing::ElementsAre(7));
    ASSERT_TRUE(log->messages[1].has_change());
    EXPECT_EQ(log->messages[1].change().user_id(), 8);
  }
  context->TryCancel();
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(kWait));
  absl::MutexLock lock(&log->mu);
  EXPECT_EQ(log->done_calls, 1);
  EXPECT_EQ(log->status.code(), absl::StatusCode::kCancelled) << log->status;
}

// Destroying the Client ends a stream nobody cancelled, and waits for its
// on_done, as for any asynchronous call.
TEST_F(ClientAsyncTest, DestroyingTheClientEndsItsWatchStreams) {
  auto done_calls = std::make_shared<std::atomic<int>>(0);
  auto status = std::make_shared<absl::Status>();
  auto first = std::make_shared<absl::Notification>();
  v1::WatchPresenceRequest request;
  request.set_send_snapshot(true);
  client_->WatchPresenceAsync(
      std::make_shared<grpc::ClientContext>(), request,
      [first](v1::WatchPresenceResponse) {
        if (!first->HasBeenNotified()) first->Notify();
      },
      [done_calls, status](absl::Status ended) {
        *status = std::move(ended);
        ++*done_calls;
      });
  ASSERT_TRUE(first->WaitForNotificationWithTimeout(kWait));
  client_.reset();
  EXPECT_EQ(done_calls->load(), 1);
  EXPECT_EQ(status->code(), absl::StatusCode::kCancelled) << *status;
}

// Calls cut short by the Client's end either finished first or report
// CANCELLED; each reports once, before the destructor returns.
TEST_F(ClientAsyncTest, DestroyingTheClientEndsEveryCallBeforeItReturns) {
  constexpr int kCalls = 200;
  auto tally = std::make_shared<Tally>(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    client_->HeartbeatAsync(1'000 + i, "",
                            Tally::For<v1::HeartbeatResponse>(tally, i));
  }
  client_.reset();
  ASSERT_TRUE(tally->AwaitAll(absl::ZeroDuration()));
  EXPECT_EQ(tally->runs(), std::vector<int>(kCalls, 1));
  std::vector<int64_t> answered;
  const std::vector<absl::Status> statuses = tally->statuses();
  for (int i = 0; i < kCalls; ++i) {
    if (statuses[i].ok()) {
      answered.push_back(1'000 + i);
    } else {
      EXPECT_EQ(statuses[i].code(), absl::StatusCode::kCancelled)
          << statuses[i];
    }
  }
  // A cancelled heartbeat may still have arrived; an answered one did.
  Client fresh(Options(server_.address));
  EXPECT_THAT(answered, ::testing::IsSubsetOf(fresh.ListAllOnline().value()));
}

// The Client goes while its calls hang on a server that never answers: it
// cancels them instead of waiting for their 60 s deadline, a page chain
// included, and every callback has run once when it returns.
TEST(ClientAsyncDestroyTest, DestroyingTheClientCancelsHangingCalls) {
  SilentServer silent;
  ASSERT_FALSE(silent.address().empty());
  constexpr int kCalls = 99;
  auto tally = std::make_shared<Tally>(kCalls);
  auto client =
      std::make_unique<Client>(Options(silent.address(), absl::Seconds(60)));
  for (int i = 0; i < kCalls; ++i) {
    switch (i % 3) {
      case 0:
        client->HeartbeatAsync(1, "",
                               Tally::For<v1::HeartbeatResponse>(tally, i));
        break;
      case 1:
        client->GetPresenceAsync({1},
                                 Tally::For<v1::GetPresenceResponse>(tally, i));
        break;
      case 2:
        client->ListAllOnlineAsync({},
                                   Tally::For<std::vector<int64_t>>(tally, i));
        break;
    }
  }
  const absl::Time start = absl::Now();
  client.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  ASSERT_TRUE(tally->AwaitAll(absl::ZeroDuration()));
  EXPECT_EQ(tally->runs(), std::vector<int>(kCalls, 1));
  for (const absl::Status& status : tally->statuses()) {
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  }
}

// A callback may start the next call on its Client (as ListAllOnlineAsync's
// pages do), and the Client outlives it.
TEST_F(ClientAsyncTest, ACallbackMayStartAnotherCall) {
  Client* client = client_.get();
  absl::StatusOr<v1::GetPresenceResponse> presence =
      Await<v1::GetPresenceResponse>([&](auto done) {
        client->HeartbeatAsync(
            9, "",
            [client, done = std::move(done)](
                absl::StatusOr<v1::HeartbeatResponse> beat) mutable {
              if (!beat.ok()) return std::move(done)(beat.status());
              client->GetPresenceAsync({9}, std::move(done));
            });
      });
  ASSERT_TRUE(presence.ok()) << presence.status();
  ASSERT_EQ(presence->users_size(), 1);
  EXPECT_EQ(presence->users(0).status(), v1::STATUS_ONLINE);
}

// Destroying the Client from its own callback would wait for that callback
// forever; it says so and aborts instead.
TEST(ClientAsyncDeathTest, DestroyingTheClientFromItsCallbackAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SilentServer silent;
  ASSERT_FALSE(silent.address().empty());
  EXPECT_DEATH(
      {
        auto* client =
            new Client(Options(silent.address(), absl::Milliseconds(10)));
        absl::Notification never;
        client->HeartbeatAsync(
            1, "",
            [client](absl::StatusOr<v1::HeartbeatResponse>) { delete client; });
        never.WaitForNotificationWithTimeout(absl::Seconds(20));
      },
      "destroyed from one of its own callbacks");
}

TEST_F(ClientAsyncTest, TwoThousandConcurrentCallsAllComplete) {
  constexpr int kUsers = 1'000;
  auto tally = std::make_shared<Tally>(2 * kUsers);
  for (int i = 0; i < kUsers; ++i) {
    client_->HeartbeatAsync(i + 1, "tab",
                            Tally::For<v1::HeartbeatResponse>(tally, 2 * i));
    client_->GetPresenceAsync(
        {i + 1}, Tally::For<v1::GetPresenceResponse>(tally, 2 * i + 1));
  }
  ASSERT_TRUE(tally->AwaitAll(kWait));
  EXPECT_EQ(tally->runs(), std::vector<int>(2 * kUsers, 1));
  EXPECT_EQ(tally->statuses(), std::vector<absl::Status>(2 * kUsers));
  EXPECT_EQ(client_->ListAllOnline().value(), Range(1, kUsers));
}

// More users than fit in one page (10,000).
TEST_F(ClientAsyncTest, ListAllOnlineAsyncFollowsEveryPage) {
  constexpr int kUsers = 25'000;
  auto tally = std::make_shared<Tally>(5);
  for (int i = 0; i < 5; ++i) {
    client_->BatchHeartbeatAsync(
        Batch(Range(i * 5'000 + 1, (i + 1) * 5'000)),
        Tally::For<v1::BatchHeartbeatResponse>(
            tally, i, [](const v1::BatchHeartbeatResponse& response) {
              for (const v1::BatchHeartbeatResult& result :
                   response.results()) {
                EXPECT_TRUE(result.has_heartbeat()) << result.DebugString();
              }
            }));
  }
  ASSERT_TRUE(tally->AwaitAll(kWait));
  EXPECT_EQ(tally->statuses(), std::vector<absl::Status>(5));

  absl::StatusOr<std::vector<int64_t>> all = Await<std::vector<int64_t>>(
      [&](auto done) { client_->ListAllOnlineAsync({}, std::move(done)); });
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, Range(1, kUsers));

  absl::StatusOr<std::vector<int64_t>> some =
      Await<std::vector<int64_t>>([&](auto done) {
        client_->ListAllOnlineAsync({kUsers + 1, 5, kUsers}, std::move(done));
      });
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_THAT(*some, ElementsAre(5, kUsers));
}

TEST(ClientAsyncAuthTest, AsyncCallsSendTheClientsToken) {
  TempDir dir;
  const std::string tokens = dir.File("tokens");
  std::ofstream(tokens) << "gateway 0123456789abcdef-async\n";
  RunningPresenced server = StartPresenced(
      {"--db=" + dir.File("presence.db"), "--auth_tokens_file=" + tokens});
  ASSERT_FALSE(server.address.empty());

  ClientOptions with_token = Options(server.address);
  with_token.token = "0123456789abcdef-async";
  Client client(with_token);
  absl::StatusOr<v1::HeartbeatResponse> beat = Await<v1::HeartbeatResponse>(
      [&](auto done) { client.HeartbeatAsync(1, "", std::move(done)); });
  EXPECT_TRUE(beat.ok()) << beat.status();

  Client anonymous(Options(server.address));
  absl::StatusOr<v1::HeartbeatResponse> refused = Await<v1::HeartbeatResponse>(
      [&](auto done) { anonymous.HeartbeatAsync(1, "", std::move(done)); });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated)
      << refused.status();
}

// A TCP proxy on 127.0.0.1 in front of presenced: CutAll() breaks every
// connection through it, as a network failure would, and while Refuse(true)
// new connections are closed at once. A stream broken this way resumes in
// the same epoch, which a restart of presenced would not give.
class CuttableProxy {
 public:
  explicit CuttableProxy(const std::string& upstream) {
    const std::string port = upstream.substr(upstream.rfind(':') + 1);
    int parsed = 0;
    if (!absl::SimpleAtoi(port, &parsed)) {
      ADD_FAILURE() << "no port in " << upstream;
      return;
    }
    upstream_port_ = static_cast<uint16_t>(parsed);
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(0);
    socklen_t len = sizeof(addr);
    if (listener_ < 0 ||
        bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listener_, 64) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    address_ = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~CuttableProxy() {
    if (listener_ >= 0) shutdown(listener_, SHUT_RDWR);  // ends accept()
    if (acceptor_.joinable()) acceptor_.join();
    CutAll();
    std::vector<std::thread> pumps;
    {
      absl::MutexLock lock(&mu_);
      pumps.swap(pumps_);
    }
    for (std::thread& pump : pumps) pump.join();
    absl::MutexLock lock(&mu_);
    for (int fd : sockets_) close(fd);
    if (listener_ >= 0) close(listener_);
  }
  CuttableProxy(const CuttableProxy&) = delete;
  CuttableProxy& operator=(const CuttableProxy&) = delete;

  const std::string& address() const { return address_; }

  void Refuse(bool refusing) {
    absl::MutexLock lock(&mu_);
    refusing_ = refusing;
  }

  void CutAll() {
    absl::MutexLock lock(&mu_);
    for (int fd : sockets_) shutdown(fd, SHUT_RDWR);
  }

 private:
  static sockaddr_in Loopback(uint16_t port) {
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    return addr;
  }

  void AcceptLoop() {
    for (;;) {
      const int client = accept(listener_, nullptr, nullptr);
      if (client < 0) return;  // shut down
      absl::MutexLock lock(&mu_);
      sockets_.push_back(client);
      if (refusing_) {
        shutdown(client, SHUT_RDWR);
        continue;
      }
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr = Loopback(upstream_port_);
      if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&addr),
                                sizeof(addr)) != 0) {
        if (server >= 0) close(server);
        shutdown(client, SHUT_RDWR);
        continue;
      }
      sockets_.push_back(server);
      pumps_.emplace_back([client, server] { Pump(client, server); });
      pumps_.emplace_back([client, server] { Pump(server, client); });
    }
  }

  // Copies `from` to `to` until either fails, then breaks both.
  static void Pump(int from, int to) {
    char buffer[16 * 1024];
    for (;;) {
      const ssize_t n = read(from, buffer, sizeof(buffer));
      if (n <= 0) break;
      ssize_t sent = 0;
      while (sent < n) {
        const ssize_t w = send(to, buffer + sent, n - sent, MSG_NOSIGNAL);
        if (w <= 0) break;
        sent += w;
      }
      if (sent < n) break;
    }
    shutdown(from, SHUT_RDWR);
    shutdown(to, SHUT_RDWR);
  }

  uint16_t upstream_port_ = 0;
  int listener_ = -1;
  std::string address_;
  absl::Mutex mu_;
  bool refusing_ ABSL_GUARDED_BY(mu_) = false;
  // Every socket accepted or opened, closed only in the destructor (after
  // the pumps), so that no pump touches a reused descriptor.
  std::vector<int> sockets_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;
};

// What a Watcher's callbacks saw, in order.
struct WatcherLog {
  absl::Mutex mu;
  std::vector<v1::WatchPresenceResponse> messages ABSL_GUARDED_BY(mu);
  std::vector<v1::PresenceChange> changes ABSL_GUARDED_BY(mu);
  // For each change, how many messages on_message had seen before it.
  std::vector<size_t> messages_before ABSL_GUARDED_BY(mu);
  int snapshots ABSL_GUARDED_BY(mu) = 0;
  int disconnects ABSL_GUARDED_BY(mu) = 0;

  WatcherCallbacks Callbacks() {
    WatcherCallbacks callbacks;
    callbacks.on_message = [this](const v1::WatchPresenceResponse& message) {
      absl::MutexLock lock(&mu);
      messages.push_back(message);
    };
    callbacks.on_snapshot = [this](const v1::Snapshot&) {
      absl::MutexLock lock(&mu);
      ++snapshots;
    };
    callbacks.on_change = [this](const v1::PresenceChange& change) {
      absl::MutexLock lock(&mu);
      changes.push_back(change);
      messages_before.push_back(messages.size());
    };
    callbacks.on_disconnect = [this](const absl::Status&, absl::Duration) {
      absl::MutexLock lock(&mu);
      ++disconnects;
    };
    return callbacks;
  }

  bool Await(const std::function<bool(WatcherLog&)>& done) {
    absl::MutexLock lock(&mu);
    auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done(*this); };
    return mu.AwaitWithTimeout(absl::Condition(&ready), kWait);
  }
};

class WatcherBatchTest : public ClientAsyncTest {
 protected:
  void SetUp() override {
    ClientAsyncTest::SetUp();
    proxy_ = std::make_unique<CuttableProxy>(server_.address);
    ASSERT_FALSE(proxy_->address().empty());
  }

  // A Watcher of everyone through the proxy, after its snapshot; the
  // snapshot's sequence in *base.
  std::unique_ptr<Watcher> StartWatcher(uint32_t max_batch, WatcherLog* log,
                                        uint64_t* base) {
    watching_ = std::make_unique<Client>(Options(proxy_->address()));
    WatcherOptions options;
    options.max_batch = max_batch;
    options.initial_backoff = absl::Milliseconds(20);
    options.max_backoff = absl::Milliseconds(200);
    auto watcher = std::make_unique<Watcher>(watching_->channel(), options,
                                             log->Callbacks());
    EXPECT_TRUE(log->Await([](WatcherLog& l) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return l.snapshots == 1;
    }));
    absl::MutexLock lock(&log->mu);
    *base = log->messages.empty() ? 0 : log->messages.front().sequence();
    return watcher;
  }

  // Runs `changes` while the watcher is cut off from presenced, then lets
  // it reconnect: presenced finds them all waiting when the stream resumes.
  void WhileCutOff(const std::function<void()>& changes) {
    proxy_->Refuse(true);
    proxy_->CutAll();
    changes();
    proxy_->Refuse(false);
  }

  std::unique_ptr<CuttableProxy> proxy_;
  std::unique_ptr<Client> watching_;
};

// Changes missed while cut off come back in one message, and on_change gets
// each once, in order, with its own sequence; the next stream resumes after
// the last of them.
TEST_F(WatcherBatchTest, ABatchReachesOnChangeOneChangeAtATime) {
  WatcherLog log;
  uint64_t base = 0;
  std::unique_ptr<Watcher> watcher = StartWatcher(1000, &log, &base);
  WhileCutOff(
      [&] { ASSERT_TRUE(client_->BatchHeartbeat(Batch(Range(60, 64))).ok()); });
  ASSERT_TRUE(log.Await([](WatcherLog& l) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return l.changes.size() == 5;
  }));
  WhileCutOff([&] {
    ASSERT_TRUE(client_->MarkOffline(60).ok());
    ASSERT_TRUE(client_->Heartbeat(65).ok());
  });
  ASSERT_TRUE(log.Await([](WatcherLog& l) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return l.changes.size() == 7;
  }));
  watcher->Stop();

  absl::MutexLock lock(&log.mu);
  std::vector<std::string> changes;
  std::vector<uint64_t> sequences;
  for (const v1::PresenceChange& change : log.changes) {
    changes.push_back(absl::StrCat(
        change.user_id(),
        change.status() == v1::STATUS_ONLINE ? " online" : " offline"));
    sequences.push_back(change.sequence());
  }
  EXPECT_THAT(changes,
              ElementsAre("60 online", "61 online", "62 online", "63 online",
                          "64 online", "60 offline", "65 online"));
  EXPECT_THAT(sequences, ElementsAre(base + 1, base + 2, base + 3, base + 4,
                                     base + 5, base + 6, base + 7));
  EXPECT_EQ(log.snapshots, 1);  // resumed, never resnapshotted
  EXPECT_GE(log.disconnects, 2);
  // On the wire: the snapshot, then one batch per resumed stream, each seen
  // by on_message before its changes reach on_change.
  ASSERT_EQ(log.messages.size(), 3u);
  const v1::WatchPresenceResponse& first = log.messages[1];
  const v1::WatchPresenceResponse& second = log.messages[2];
  ASSERT_TRUE(first.has_changes());
  EXPECT_EQ(first.changes().changes_size(), 5);
  EXPECT_EQ(first.sequence(), base + 5);
  ASSERT_TRUE(second.has_changes());
  EXPECT_EQ(second.changes().changes_size(), 2);
  EXPECT_EQ(second.sequence(), base + 7);
  EXPECT_THAT(log.messages_before, ElementsAre(2, 2, 2, 2, 2, 3, 3));
}

// max_batch 0 asks for the original form, one change per message.
TEST_F(WatcherBatchTest, MaxBatchZeroGetsSingleChanges) {
  WatcherLog log;
  uint64_t base = 0;
  std::unique_ptr<Watcher> watcher = StartWatcher(0, &log, &base);
  WhileCutOff(
      [&] { ASSERT_TRUE(client_->BatchHeartbeat(Batch(Range(70, 72))).ok()); });
  ASSERT_TRUE(log.Await([](WatcherLog& l) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return l.changes.size() == 3;
  }));
  watcher->Stop();

  absl::MutexLock lock(&log.mu);
  ASSERT_EQ(log.messages.size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    const v1::WatchPresenceResponse& message = log.messages[i + 1];
    ASSERT_TRUE(message.has_change()) << i;
    EXPECT_EQ(message.sequence(), base + 1 + i);
    EXPECT_EQ(log.changes[i].user_id(), static_cast<int64_t>(70 + i));
    EXPECT_EQ(log.changes[i].sequence(), base + 1 + i);
  }
}

}  // namespace
}  // namespace presence
