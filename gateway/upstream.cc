#include "gateway/upstream.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "boost/asio/post.hpp"
#include "gateway/json.h"
#include "gateway/presence_json.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/time_util.h"

namespace presence::rest {
namespace {

namespace asio = boost::asio;
using google::protobuf::Struct;
using google::protobuf::util::TimeUtil;

// Changes per WatchPresence message (presenced's cap): after a burst, or
// when this proxy fell behind, the stream catches up in few messages.
constexpr uint32_t kWatchMaxBatch = 1'000;

// How a failed call to presenced looks to the browser.
Response ErrorFromPresenced(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return ErrorResponse(http::status::bad_request, status.message());
    case absl::StatusCode::kResourceExhausted:
      return ErrorResponse(http::status::too_many_requests, status.message());
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return ErrorResponse(
          http::status::service_unavailable,
          absl::StrCat("presence service unavailable: ", status.message()));
    default:
      return ErrorResponse(
          http::status::bad_gateway,
          absl::StrCat("presence service error: ", status.message()));
  }
}

Response HeartbeatAnswer(const v1::HeartbeatResponse& response) {
  Struct body;
  auto& fields = *body.mutable_fields();
  fields["online"].set_bool_value(true);
  fields["became_online"].set_bool_value(response.became_online());
  fields["online_until"].set_string_value(
      TimeUtil::ToString(response.online_until()));
  fields["server_time"].set_string_value(
      TimeUtil::ToString(response.server_time()));
  fields["heartbeat_interval_seconds"].set_number_value(
      static_cast<double>(
          TimeUtil::DurationToMilliseconds(response.heartbeat_interval())) /
      1000.0);
  return JsonResponse(http::status::ok, JsonObject(body));
}

}  // namespace

Upstream::Upstream(const UpstreamOptions& options, asio::io_context& io,
                   GatewayMetrics* metrics, WatchCallbacks callbacks)
    : options_(options),
      client_(std::make_unique<Client>(options.presenced)),
      io_(io),
      metrics_(metrics),
      callbacks_(std::move(callbacks)),
      lost_reason_(absl::StrCat("connecting to presenced at ",
                                options.presenced.target)),
      backoff_(options.initial_backoff),
      retry_timer_(io),
      snapshot_timer_(io),
      check_timer_(io) {}

template <typename Response>
Client::Callback<Response> Upstream::OnIoThread(
    absl::AnyInvocable<void(absl::StatusOr<Response>)> done) {
  // The Client runs `done` on a gRPC thread; everything here belongs to the
  // I/O thread.
  return [this,
          done = std::move(done)](absl::StatusOr<Response> result) mutable {
    asio::post(io_,
               [done = std::move(done), result = std::move(result)]() mutable {
                 done(std::move(result));
               });
  };
}

void Upstream::Heartbeat(int64_t user_id, std::string session_id, bool idle,
                         Done done) {
  client_->HeartbeatAsync(
      user_id, session_id, idle,
      OnIoThread<v1::HeartbeatResponse>(
          [done = std::move(done)](
              absl::StatusOr<v1::HeartbeatResponse> response) {
            if (!response.ok())
              return done(ErrorFromPresenced(response.status()));
            done(HeartbeatAnswer(*response));
          }));
}

void Upstream::MarkOffline(int64_t user_id, std::string session_id, Done done) {
  client_->MarkOfflineAsync(
      user_id, session_id,
      OnIoThread<v1::MarkOfflineResponse>(
          [done = std::move(done)](
              absl::StatusOr<v1::MarkOfflineResponse> response) {
            if (!response.ok())
              return done(ErrorFromPresenced(response.status()));
            Struct body;
            auto& fields = *body.mutable_fields();
            fields["still_online"].set_bool_value(response->still_online());
            fields["sessions_ended"].set_number_value(
                response->sessions_ended());
            fields["server_time"].set_string_value(
                TimeUtil::ToString(response->server_time()));
            done(JsonResponse(http::status::ok, JsonObject(body)));
          }));
}

void Upstream::OnlineUsers(std::vector<int64_t> only, Done done) {
  client_->ListAllOnlineAsync(
      only,
      OnIoThread<std::vector<int64_t>>(
          [done =
               std::move(done)](absl::StatusOr<std::vector<int64_t>> online) {
            if (!online.ok()) {
              return done(ErrorFromPresenced(online.status()));
            }
            done(JsonResponse(
                http::status::ok,
                JsonObject(Struct(), {{"online_users", JsonIdList(*online)}})));
          }));
}

void Upstream::SetStatus(v1::SetStatusRequest request, Done done) {
  client_->SetStatusAsync(
      std::move(request),
      OnIoThread<v1::SetStatusResponse>(
          [done = std::move(done)](
              absl::StatusOr<v1::SetStatusResponse> response) {
            if (!response.ok()) {
              return done(ErrorFromPresenced(response.status()));
            }
            Struct body = UserPresenceFields(response->presence());
            (*body.mutable_fields())["server_time"].set_string_value(
                TimeUtil::ToString(response->server_time()));
            done(JsonResponse(
                http::status::ok,
                JsonObject(body,
                           {{"user_id",
                             absl::StrCat(response->presence().user_id())}})));
          }));
}

void Upstream::Presence(int64_t viewer, std::vector<int64_t> users, Done done) {
  v1::GetPresenceRequest request;
  request.mutable_user_ids()->Add(users.begin(), users.end());
  request.set_viewer_user_id(viewer);
  request.set_rich_status(true);
  client_->GetPresenceAsync(
      std::move(request),
      OnIoThread<v1::GetPresenceResponse>(
          [done = std::move(done)](
              absl::StatusOr<v1::GetPresenceResponse> response) {
            if (!response.ok()) {
              return done(ErrorFromPresenced(response.status()));
            }
            std::vector<std::string> entries;
            entries.reserve(response->users_size());
            for (const v1::UserPresence& user : response->users()) {
              entries.push_back(UserPresenceJson(user));
            }
            Struct body;
            (*body.mutable_fields())["server_time"].set_string_value(
                TimeUtil::ToString(response->server_time()));
            done(JsonResponse(
                http::status::ok,
                JsonObject(
                    body,
                    {{"users",
                      absl::StrCat("[", absl::StrJoin(entries, ","), "]")}})));
          }));
}

void Upstream::StartWatch() { StartAttempt(); }

void Upstream::StopWatch() {
  stopping_ = true;
  retry_timer_.cancel();
  snapshot_timer_.cancel();
  check_timer_.cancel();
  if (watch_context_ != nullptr) watch_context_->TryCancel();
  watch_context_ = nullptr;
}

void Upstream::StartAttempt() {
  if (stopping_) return;
  if (attempt_ > 0) metrics_->CountReconnect();
  const uint64_t attempt = ++attempt_;
  // gRPC's own reconnect backoff (growing past a minute) would otherwise
  // decide when a channel tries presenced (each shard) again; this watch's
  // backoff should.
  client_->ResetConnectionBackoff();
  watch_context_ = std::make_shared<grpc::ClientContext>();
  v1::WatchPresenceRequest request;
  request.set_send_snapshot(true);  // everyone: browsers filter in fanout
  request.set_max_batch(kWatchMaxBatch);
  // Away, dnd and custom statuses too (the `status` events), and each
  // online user's in the snapshot. Online and offline keep their classic
  // meaning: an invisible user is offline.
  request.set_rich_status(true);
  // Everything the stream says is posted to the I/O thread, tagged with its
  // attempt, so that a stream given up on cannot act any more.
  client_->WatchPresenceAsync(
      watch_context_, std::move(request),
      [this, attempt](v1::WatchPresenceResponse message) {
        asio::post(io_, [this, attempt, message = std::move(message)] {
          OnWatchMessage(attempt, message);
        });
      },
      [this, attempt](absl::Status status) {
        asio::post(io_, [this, attempt, status = std::move(status)] {
          OnWatchEnded(attempt, status);
        });
      });
  snapshot_timer_.expires_after(
      absl::ToChronoNanoseconds(options_.presenced.deadline));
  snapshot_timer_.async_wait([this, attempt](boost::system::error_code error) {
    if (error || attempt != attempt_ || state_ == State::kLive) return;
    Lose(absl::StrCat("presenced at ", options_.presenced.target,
                      " sent no snapshot within ",
                      absl::FormatDuration(options_.presenced.deadline)));
  });
}

void Upstream::OnWatchMessage(uint64_t attempt,
                              const v1::WatchPresenceResponse& message) {
  if (stopping_ || attempt != attempt_) return;
  if (message.has_snapshot()) {
    if (state_ != State::kLive) {
      if (state_ == State::kLost) {
        LogInfo(absl::StrCat("WatchPresence stream to presenced at ",
                             options_.presenced.target, " is live again"));
      }
      state_ = State::kLive;
      lost_reason_.clear();
      backoff_ = options_.initial_backoff;
      snapshot_timer_.cancel();
      metrics_->SetUpstreamLive(true);
      ScheduleCheck();
    }
    callbacks_.on_snapshot(message.snapshot());
  } else if (state_ == State::kLive) {
    if (message.has_change()) {
      callbacks_.on_change(message.change());
    } else if (message.has_changes()) {
      for (const v1::PresenceChange& change : message.changes().changes()) {
        callbacks_.on_change(change);
      }
    }
  }
}

void Upstream::OnWatchEnded(uint64_t attempt, const absl::Status& status) {
  if (stopping_ || attempt != attempt_) return;
  Lose(ReasonFor(status));
}

void Upstream::Lose(std::string reason) {
  ++attempt_;  // whatever the current stream still says is ignored
  if (watch_context_ != nullptr) watch_context_->TryCancel();
  watch_context_ = nullptr;
  snapshot_timer_.cancel();
  check_timer_.cancel();
  const bool was_lost = state_ == State::kLost;
  state_ = State::kLost;
  lost_reason_ = std::move(reason);
  metrics_->SetUpstreamLive(false);
  log_.Log(absl::StrCat("WatchPresence: ", lost_reason_, "; retrying in ",
                        absl::FormatDuration(backoff_)));
  if (!was_lost) callbacks_.on_lost(lost_reason_);
  retry_timer_.expires_after(absl::ToChronoNanoseconds(backoff_));
  retry_timer_.async_wait([this](boost::system::error_code error) {
    if (!error) StartAttempt();
  });
  backoff_ = std::min(backoff_ * 2, options_.max_backoff);
}

void Upstream::ScheduleCheck() {
  check_timer_.expires_after(
      absl::ToChronoNanoseconds(options_.check_interval));
  check_timer_.async_wait([this](boost::system::error_code error) {
    if (error || stopping_ || state_ != State::kLive) return;
    const uint64_t attempt = attempt_;
    // One id of everyone: cheap on presenced (a page costs its size, not a
    // scan), and a sharded client asks every shard, so the check covers
    // each stream of the watch, not just one user's shard.
    v1::ListOnlineRequest request;
    request.set_page_size(1);
    client_->ListOnlineAsync(
        std::move(request), options_.check_interval,
        OnIoThread<v1::ListOnlineResponse>(
            [this, attempt](absl::StatusOr<v1::ListOnlineResponse> response) {
              if (stopping_ || attempt != attempt_ || state_ != State::kLive) {
                return;
              }
              switch (response.status().code()) {
                case absl::StatusCode::kUnavailable:
                case absl::StatusCode::kDeadlineExceeded:
                case absl::StatusCode::kUnauthenticated:
                case absl::StatusCode::kPermissionDenied:
                  return Lose(absl::StrCat("a check call failed: ",
                                           ReasonFor(response.status())));
                default:  // presenced answered: it is there
                  return ScheduleCheck();
              }
            }));
  });
}

std::string Upstream::ReasonFor(const absl::Status& status) const {
  const std::string& target = options_.presenced.target;
  const std::string detail = absl::StrCat(
      absl::StatusCodeToString(status.code()), ": ", status.message());
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return absl::StrCat("presenced at ", target, " ended the watch stream");
    case absl::StatusCode::kUnavailable:
      return absl::StrCat("cannot reach presenced at ", target, " (", detail,
                          ")");
    case absl::StatusCode::kDeadlineExceeded:
      return absl::StrCat("presenced at ", target, " did not answer in time (",
                          detail, ")");
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return absl::StrCat("presenced at ", target,
                          " refuses presence-rest's token (", detail,
                          "); check --presenced_token_file against "
                          "presenced's --auth_tokens_file");
    default:
      return absl::StrCat("the watch on presenced at ", target, " failed (",
                          detail, ")");
  }
}

}  // namespace presence::rest
