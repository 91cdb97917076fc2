// presence-rest's side of presenced: every gRPC call it makes and the JSON
// its answers become, in one place.
#ifndef PRESENCE_GATEWAY_UPSTREAM_H_
#define PRESENCE_GATEWAY_UPSTREAM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "gateway/metrics.h"
#include "gateway/responses.h"
#include "presence/client.h"
#include "service/log.h"

namespace presence::rest {

struct UpstreamOptions {
  // presenced's address, credentials, token, and each call's deadline (also
  // the longest a new WatchPresence stream may take to send its snapshot).
  ClientOptions presenced;
  // The watch's reconnect backoff: the first retry soon (a restarted
  // presenced is back in well under a second), doubling to the cap, which
  // bounds how late a browser hears that presenced is back.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(1);
  // While the watch is live, presenced answers a small ListOnline this
  // often, within the same time: a presenced that hangs, or whose host died
  // without closing the connection, sends no error on the stream.
  absl::Duration check_interval = absl::Seconds(1);
};

// Calls presenced with gRPC's callback API and follows one WatchPresence
// stream of everyone. Every result and callback runs on the I/O thread of
// `io` (completions are posted there), so no caller holds a lock.
//
// The watch is "live" from the snapshot that starts a stream until that
// stream ends or a check fails; then it is lost, with a reason a person can
// act on, and retried with backoff whatever the error (presenced's tokens
// can be fixed and reloaded with SIGHUP, so even UNAUTHENTICATED is worth
// retrying). Each new stream asks for a snapshot: a browser must get a fresh
// one when the watch is live again. The stream asks for changes in batches
// (WatchPresenceRequest.max_batch); each reaches on_change on its own. It
// asks for rich status (WatchPresenceRequest.rich_status): changes among
// online, away and dnd and of custom statuses too, and a snapshot with each
// online user's presence.
class Upstream {
 public:
  struct WatchCallbacks {
    // The watch is live (again), or presenced resent who is online.
    std::function<void(const v1::Snapshot& snapshot)> on_snapshot;
    // One transition while the watch is live: once per change, in order,
    // whether presenced sent it alone or in a batch.
    std::function<void(const v1::PresenceChange& change)> on_change;
    // The watch was lost (it was live, or had never been).
    std::function<void(const std::string& reason)> on_lost;
  };
  // Receives the HTTP answer of a call, on the I/O thread.
  using Done = std::function<void(Response response)>;

  // `metrics` must outlive this.
  Upstream(const UpstreamOptions& options, boost::asio::io_context& io,
           GatewayMetrics* metrics, WatchCallbacks callbacks);
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  // I/O thread only.
  void StartWatch();
  void StopWatch();
  bool live() const { return state_ == State::kLive; }
  // Why the watch is not live ("connecting ..." before its first stream).
  const std::string& lost_reason() const { return lost_reason_; }

  // The chat endpoints. An empty `session_id` is the user's default session
  // (Heartbeat) or every session of the user (MarkOffline). `idle`: the
  // user did not use the session since its previous heartbeat
  // (HeartbeatRequest.idle). I/O thread only.
  void Heartbeat(int64_t user_id, std::string session_id, bool idle, Done done);
  void MarkOffline(int64_t user_id, std::string session_id, Done done);
  // `only` empty: everyone online. Follows every page.
  void OnlineUsers(std::vector<int64_t> only, Done done);

  // Rich presence. SetStatus answers the user's own view (`request` names
  // the user); Presence answers `users` as `viewer` sees them, with away and
  // dnd (GetPresence with viewer_user_id and rich_status). I/O thread only.
  void SetStatus(v1::SetStatusRequest request, Done done);
  void Presence(int64_t viewer, std::vector<int64_t> users, Done done);

  // Cancels the calls and the stream still in flight and waits until each
  // has ended (the Client's destructor); their results are posted to `io`,
  // which must outlive this call, and are dropped. After StopWatch(), once
  // the I/O thread stopped; never on one of gRPC's threads.
  void WaitForCalls() { client_.reset(); }

 private:
  enum class State { kConnecting, kLive, kLost };

  // Wraps `done` to run on the I/O thread.
  template <typename Response>
  Client::Callback<Response> OnIoThread(
      absl::AnyInvocable<void(absl::StatusOr<Response>)> done);

  void StartAttempt();
  void OnWatchMessage(uint64_t attempt,
                      const v1::WatchPresenceResponse& message);
  void OnWatchEnded(uint64_t attempt, const absl::Status& status);
  void Lose(std::string reason);
  void ScheduleCheck();
  std::string ReasonFor(const absl::Status& status) const;

  const UpstreamOptions options_;
  std::unique_ptr<Client> client_;
  boost::asio::io_context& io_;
  GatewayMetrics* const metrics_;
  const WatchCallbacks callbacks_;
  ThrottledErrorLog log_;

  // I/O thread only.
  State state_ = State::kConnecting;
  std::string lost_reason_;
  bool stopping_ = false;
  uint64_t attempt_ = 0;  // the current stream; older ones are ignored
  std::shared_ptr<grpc::ClientContext> watch_context_;
  absl::Duration backoff_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer snapshot_timer_;
  boost::asio::steady_timer check_timer_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_UPSTREAM_H_
