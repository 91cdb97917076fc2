// presence::Client's calls over several shards: each call is split by the
// owner of its users, the parts go to their shards at once, and the answers
// are merged into what one presenced would have answered. One role, kept
// whole: every call here is a plan (split), the shared fan-out (Join,
// CallEach) and a merge, and they read best side by side. The watch, which
// has state of its own, is in sharded_watch.cc.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/client_internal.h"
#include "service/status_macros.h"

namespace presence::internal {
namespace {

// The sharded page token: web-safe base64 (no padding) of
// "sharded-after:<ID>;done:<NAME>,<NAME>". The Python client writes the
// same; keep both alike.
constexpr absl::string_view kShardedCursor = "sharded-after:";
constexpr absl::string_view kShardedDone = ";done:";
// presenced's own token for "the page after ID": EncodePageToken() in
// service/request_validation.cc.
constexpr absl::string_view kShardCursor = "after:";
// presenced's page size when a request gives 0, and its cap.
constexpr int kDefaultPageSize = 1'000;
constexpr int kMaxPageSize = 10'000;

std::string ShardMessage(const Shard& shard, absl::string_view message) {
  return absl::StrCat("shard ", shard.name, " (", shard.target, "): ", message);
}

// Gathers the answers of n parts of one call, and hands all of them, in
// part order, to `then` once the last has come (on that one's thread).
template <typename T>
class Join {
 public:
  using Then = absl::AnyInvocable<void(std::vector<absl::StatusOr<T>>) &&>;

  Join(size_t parts, Then then)
      : left_(parts),
        results_(parts, absl::UnknownError("no answer")),
        then_(std::move(then)) {}

  // The callback of part `part`.
  static Client::Callback<T> PartDone(std::shared_ptr<Join> join, size_t part) {
    return [join = std::move(join), part](absl::StatusOr<T> result) {
      join->results_[part] = std::move(result);
      // The last part sees every other part's result (acquire) after they
      // stored it (release).
      if (join->left_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
      Then then = std::move(join->then_);
      std::move(then)(std::move(join->results_));
    };
  }

 private:
  std::atomic<size_t> left_;
  std::vector<absl::StatusOr<T>> results_;
  Then then_;
};

// Items of a request that go to one shard: their positions in the request.
struct Part {
  size_t shard = 0;
  std::vector<int> positions;
};

// The items 0..count-1 by owner, in the order of each shard's first item;
// each part keeps its items' order.
std::vector<Part> SplitByOwner(const ShardMap& map, int count,
                               absl::FunctionRef<int64_t(int)> user_of) {
  std::vector<int> part_of(map.size(), -1);
  std::vector<Part> parts;
  for (int i = 0; i < count; ++i) {
    const size_t shard = map.OwnerIndex(user_of(i));
    if (part_of[shard] < 0) {
      part_of[shard] = static_cast<int>(parts.size());
      parts.push_back(Part{shard, {}});
    }
    parts[part_of[shard]].positions.push_back(i);
  }
  return parts;
}

// A per-item error's message with the item's index in the shard's request
// ("heartbeats[K]...") replaced by its index in the caller's.
std::string Reindexed(absl::string_view message, int shard_index,
                      int caller_index) {
  const std::string prefix = absl::StrCat("heartbeats[", shard_index, "]");
  if (!absl::ConsumePrefix(&message, prefix)) return std::string(message);
  return absl::StrCat("heartbeats[", caller_index, "]", message);
}

// The first failure of `results` (they are in part order), named, or OK.
template <typename T>
absl::Status FirstFailure(const std::vector<absl::StatusOr<T>>& results,
                          const std::vector<size_t>& shards,
                          const ShardMap& map) {
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      return ShardError(map.shard(shards[i]), results[i].status());
    }
  }
  return absl::OkStatus();
}

std::vector<size_t> ShardsOf(const std::vector<Part>& parts) {
  std::vector<size_t> shards;
  for (const Part& part : parts) shards.push_back(part.shard);
  return shards;
}

// Where a sharded listing is: every id up to `after` has been listed, and
// the shards marked done have nothing more after it.
struct Cursor {
  int64_t after = 0;
  std::vector<bool> done;  // by shard
};

absl::StatusOr<Cursor> DecodeCursor(const ShardMap& map,
                                    absl::string_view token) {
  Cursor cursor;
  cursor.done.assign(map.size(), false);
  if (token.empty()) return cursor;
  std::string raw;
  absl::string_view rest;
  bool ok = absl::WebSafeBase64Unescape(token, &raw);
  rest = raw;
  ok = ok && absl::ConsumePrefix(&rest, kShardedCursor);
  const size_t end = ok ? rest.find(';') : absl::string_view::npos;
  ok = end != absl::string_view::npos &&
       absl::SimpleAtoi(rest.substr(0, end), &cursor.after) && cursor.after > 0;
  if (ok) rest.remove_prefix(end);
  if (!ok || !absl::ConsumePrefix(&rest, kShardedDone)) {
    return absl::InvalidArgumentError(
        "page_token is not a token from a previous ListOnline response of "
        "this sharded deployment; pass next_page_token unchanged, or empty "
        "for the first page");
  }
  if (rest.empty()) return cursor;
  for (absl::string_view name : absl::StrSplit(rest, ',')) {
    const int shard = map.IndexOf(name);
    if (shard < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_token names shard \"", name,
                       "\", which is not in the shard map"));
    }
    cursor.done[shard] = true;
  }
  return cursor;
}

std::string EncodeCursor(const ShardMap& map, const Cursor& cursor) {
  std::vector<absl::string_view> done;
  for (size_t i = 0; i < map.size(); ++i) {
    if (cursor.done[i]) done.push_back(map.shard(i).name);
  }
  return absl::WebSafeBase64Escape(absl::StrCat(
      kShardedCursor, cursor.after, kShardedDone, absl::StrJoin(done, ",")));
}

// A shard's own token for the page after `after` (the first page: none).
std::string ShardPageToken(int64_t after) {
  if (after == 0) return "";
  return absl::WebSafeBase64Escape(absl::StrCat(kShardCursor, after));
}

// The blocking form of a method, for a call on a completion queue of its
// own: a blocking sharded call needs none of gRPC's callback threads, like
// a blocking call to one presenced.
template <typename Request, typename Response>
using PrepareMethod =
    std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> (Stub::*)(
        grpc::ClientContext*, const Request&, grpc::CompletionQueue*);

// One call on a completion queue, and what it leaves.
template <typename Response>
struct QueuedCall {
  grpc::ClientContext context;
  Response response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
};

template <typename Request, typename Response>
std::unique_ptr<QueuedCall<Response>> StartQueued(
    const AsyncCalls& calls, size_t shard,
    PrepareMethod<Request, Response> method, const Request& request,
    absl::Duration deadline, grpc::CompletionQueue* queue, void* tag) {
  auto call = std::make_unique<QueuedCall<Response>>();
  PrepareContext(&call->context, deadline);
  call->reader = (calls.stub(shard)->*method)(&call->context, request, queue);
  call->reader->StartCall();
  call->reader->Finish(&call->response, &call->status, tag);
  return call;
}

// Calls on a completion queue are tagged with their index (+1: no null tag).
void* Tag(size_t index) { return reinterpret_cast<void*>(index + 1); }

// Waits for the queue's next call; its index.
size_t Next(grpc::CompletionQueue* queue) {
  void* tag = nullptr;
  bool ok = false;
  queue->Next(&tag, &ok);  // a Finish always completes, ok
  return reinterpret_cast<size_t>(tag) - 1;
}

void Drain(grpc::CompletionQueue* queue) {
  queue->Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (queue->Next(&tag, &ok)) {
  }
}

// requests[i] to shards[i], all at once; their results, in that order.
template <typename Request, typename Response>
std::vector<absl::StatusOr<Response>> CallEach(
    const AsyncCalls& calls, PrepareMethod<Request, Response> method,
    const std::vector<size_t>& shards, const std::vector<Request>& requests,
    absl::Duration deadline) {
  grpc::CompletionQueue queue;
  std::vector<std::unique_ptr<QueuedCall<Response>>> started;
  for (size_t i = 0; i < shards.size(); ++i) {
    started.push_back(StartQueued(calls, shards[i], method, requests[i],
                                  deadline, &queue, Tag(i)));
  }
  for (size_t i = 0; i < shards.size(); ++i) Next(&queue);
  Drain(&queue);
  std::vector<absl::StatusOr<Response>> results;
  for (const auto& call : started) {
    results.push_back(ToResult(call->status, std::move(call->response)));
  }
  return results;
}

// The same through gRPC's callbacks: `then` gets the results in the last
// one's callback.
template <typename Request, typename Response>
void CallEachAsync(const std::shared_ptr<AsyncCalls>& calls,
                   AsyncMethod<Request, Response> method,
                   const std::vector<size_t>& shards,
                   std::vector<Request> requests,
                   std::optional<absl::Duration> deadline,
                   typename Join<Response>::Then then) {
  auto join = std::make_shared<Join<Response>>(shards.size(), std::move(then));
  for (size_t i = 0; i < shards.size(); ++i) {
    CallAsync(calls, shards[i], method, std::move(requests[i]),
              Join<Response>::PartDone(join, i), deadline);
  }
}

// A BatchHeartbeat split by owner.
struct BatchPlan {
  std::vector<Part> parts;
  std::vector<size_t> shards;  // parts' shards
  std::vector<v1::BatchHeartbeatRequest> requests;
  int items = 0;
};

BatchPlan PlanBatch(const ShardMap& map, v1::BatchHeartbeatRequest request) {
  BatchPlan plan;
  plan.items = request.heartbeats_size();
  plan.parts = SplitByOwner(
      map, plan.items, [&](int i) { return request.heartbeats(i).user_id(); });
  // No item: nothing to route, and any shard answers alike.
  if (plan.parts.empty()) plan.parts.push_back(Part{0, {}});
  plan.shards = ShardsOf(plan.parts);
  plan.requests.resize(plan.parts.size());
  for (size_t p = 0; p < plan.parts.size(); ++p) {
    for (int position : plan.parts[p].positions) {
      *plan.requests[p].add_heartbeats() =
          std::move(*request.mutable_heartbeats(position));
    }
  }
  return plan;
}

absl::StatusOr<v1::BatchHeartbeatResponse> MergeBatch(
    const ShardMap& map, const BatchPlan& plan,
    std::vector<absl::StatusOr<v1::BatchHeartbeatResponse>> results) {
  v1::BatchHeartbeatResponse merged;
  for (int i = 0; i < plan.items; ++i) merged.add_results();
  absl::Status first_failure;
  size_t failed = 0;
  for (size_t p = 0; p < plan.parts.size(); ++p) {
    const Shard& shard = map.shard(plan.parts[p].shard);
    const std::vector<int>& positions = plan.parts[p].positions;
    absl::StatusOr<v1::BatchHeartbeatResponse>& answer = results[p];
    if (answer.ok() &&
        answer->results_size() != static_cast<int>(positions.size())) {
      answer = absl::InternalError(
          absl::StrCat("answered ", answer->results_size(), " results to ",
                       positions.size(), " heartbeats"));
    }
    if (!answer.ok()) {
      const absl::Status error = ShardError(shard, answer.status());
      if (failed++ == 0) first_failure = error;
      for (int position : positions) {
        v1::BatchHeartbeatResult::Error* item =
            merged.mutable_results(position)->mutable_error();
        item->set_code(static_cast<int32_t>(error.code()));
        item->set_message(std::string(error.message()));
      }
      continue;
    }
    if (answer->has_server_time()) {
      KeepLatest(answer->server_time(), merged.mutable_server_time());
    }
    for (int k = 0; k < answer->results_size(); ++k) {
      v1::BatchHeartbeatResult& item = *answer->mutable_results(k);
      if (item.has_error()) {
        item.mutable_error()->set_message(ShardMessage(
            shard, Reindexed(item.error().message(), k, positions[k])));
      }
      *merged.mutable_results(positions[k]) = std::move(item);
    }
  }
  if (failed == plan.parts.size()) return first_failure;
  return merged;
}

// A GetPresence split by owner.
struct PresencePlan {
  std::vector<Part> parts;
  std::vector<size_t> shards;
  std::vector<v1::GetPresenceRequest> requests;
  int count = 0;
};

absl::StatusOr<PresencePlan> PlanPresence(
    const ShardMap& map, const v1::GetPresenceRequest& request) {
  const absl::Span<const int64_t> user_ids = request.user_ids();
  PRESENCE_RETURN_IF_ERROR(CheckUserIds(user_ids));
  PresencePlan plan;
  plan.count = static_cast<int>(user_ids.size());
  plan.parts =
      SplitByOwner(map, plan.count, [&](int i) { return user_ids[i]; });
  if (plan.parts.empty()) plan.parts.push_back(Part{0, {}});
  plan.shards = ShardsOf(plan.parts);
  // Each part is the request with its shard's ids: whatever else it asks
  // (viewer_user_id, rich_status, fields newer than this code) each shard
  // is asked too.
  v1::GetPresenceRequest rest = request;
  rest.clear_user_ids();
  plan.requests.assign(plan.parts.size(), rest);
  for (size_t p = 0; p < plan.parts.size(); ++p) {
    for (int position : plan.parts[p].positions) {
      plan.requests[p].add_user_ids(user_ids[position]);
    }
  }
  return plan;
}

absl::StatusOr<v1::GetPresenceResponse> MergePresence(
    const ShardMap& map, const PresencePlan& plan,
    std::vector<absl::StatusOr<v1::GetPresenceResponse>> results) {
  for (size_t p = 0; p < plan.parts.size(); ++p) {
    if (results[p].ok() &&
        results[p]->users_size() !=
            static_cast<int>(plan.parts[p].positions.size())) {
      results[p] = absl::InternalError(
          absl::StrCat("answered ", results[p]->users_size(), " presences to ",
                       plan.parts[p].positions.size(), " user ids"));
    }
  }
  PRESENCE_RETURN_IF_ERROR(FirstFailure(results, plan.shards, map));
  v1::GetPresenceResponse merged;
  for (int i = 0; i < plan.count; ++i) merged.add_users();
  for (size_t p = 0; p < plan.parts.size(); ++p) {
    KeepLatest(results[p]->server_time(), merged.mutable_server_time());
    const std::vector<int>& positions = plan.parts[p].positions;
    for (size_t k = 0; k < positions.size(); ++k) {
      *merged.mutable_users(positions[k]) =
          std::move(*results[p]->mutable_users(static_cast<int>(k)));
    }
  }
  return merged;
}

// One page of a sharded listing. Every shard that takes part (owns some of
// user_ids, or everyone without) and is not done lists page_size users
// after the cursor; the page is the smallest ids of their union, up to the
// smallest last id of a shard that has more (beyond it, that shard's next
// ids are unknown). Every id up to the page's last one has then been
// listed, by every shard: the next page starts after it everywhere. A shard
// that answered everything it has after the cursor, and whose ids all made
// the page, is done. Done shards are asked for one id only: their count
// still belongs in total_online.
struct PagePlan {
  std::vector<size_t> shards;  // asked, in shard order
  std::vector<bool> listing;   // by shard asked: for a page, not a count
  std::vector<v1::ListOnlineRequest> requests;
  Cursor cursor;
  size_t page_size = 0;
};

absl::StatusOr<PagePlan> PlanPage(const ShardMap& map,
                                  const v1::ListOnlineRequest& request) {
  PRESENCE_RETURN_IF_ERROR(CheckUserIds(request.user_ids()));
  absl::StatusOr<Cursor> cursor = DecodeCursor(map, request.page_token());
  if (!cursor.ok()) return cursor.status();
  PagePlan plan;
  plan.cursor = *std::move(cursor);
  const bool everyone = request.user_ids().empty();
  const std::vector<std::vector<int64_t>> ids =
      IdsByOwner(map, request.user_ids());
  for (size_t shard = 0; shard < map.size(); ++shard) {
    if (!everyone && ids[shard].empty()) {
      plan.cursor.done[shard] = true;  // nothing of it is asked for
      continue;
    }
    const bool done = plan.cursor.done[shard];
    v1::ListOnlineRequest part;
    part.mutable_user_ids()->Add(ids[shard].begin(), ids[shard].end());
    part.set_page_token(ShardPageToken(plan.cursor.after));
    part.set_page_size(done ? 1 : request.page_size());
    plan.shards.push_back(shard);
    plan.listing.push_back(!done);
    plan.requests.push_back(std::move(part));
  }
  plan.page_size =
      request.page_size() <= 0
          ? kDefaultPageSize
          : static_cast<size_t>(std::min(request.page_size(), kMaxPageSize));
  return plan;
}

absl::StatusOr<v1::ListOnlineResponse> MergePage(
    const ShardMap& map, PagePlan plan,
    const std::vector<absl::StatusOr<v1::ListOnlineResponse>>& results) {
  PRESENCE_RETURN_IF_ERROR(FirstFailure(results, plan.shards, map));
  v1::ListOnlineResponse merged;
  int64_t total = 0;
  int64_t bound = std::numeric_limits<int64_t>::max();
  std::vector<int64_t> users;
  for (size_t p = 0; p < plan.shards.size(); ++p) {
    const v1::ListOnlineResponse& answer = *results[p];
    total += answer.total_online();
    KeepLatest(answer.server_time(), merged.mutable_server_time());
    if (!plan.listing[p]) continue;
    users.insert(users.end(), answer.online_users().begin(),
                 answer.online_users().end());
    if (!answer.next_page_token().empty() && !answer.online_users().empty()) {
      bound = std::min(bound, *answer.online_users().rbegin());
    }
  }
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  users.erase(std::upper_bound(users.begin(), users.end(), bound), users.end());
  if (users.size() > plan.page_size) users.resize(plan.page_size);
  Cursor& cursor = plan.cursor;
  if (!users.empty()) cursor.after = users.back();
  bool all_done = true;
  for (size_t p = 0; p < plan.shards.size(); ++p) {
    if (plan.listing[p]) {
      const v1::ListOnlineResponse& answer = *results[p];
      const bool more = !answer.next_page_token().empty();
      // A shard with "more" but no id cannot say where: done.
      if (answer.online_users().empty() ||
          (!more && *answer.online_users().rbegin() <= cursor.after)) {
        cursor.done[plan.shards[p]] = true;
      }
    }
    all_done = all_done && cursor.done[plan.shards[p]];
  }
  merged.mutable_online_users()->Add(users.begin(), users.end());
  merged.set_total_online(total);
  if (!all_done) merged.set_next_page_token(EncodeCursor(map, cursor));
  return merged;
}

// Whom a sharded ListAllOnline asks, and for whom.
struct ListAllPlan {
  std::vector<size_t> shards;
  std::vector<std::vector<int64_t>> ids;  // by shard
};

absl::StatusOr<ListAllPlan> PlanListAll(const ShardMap& map,
                                        absl::Span<const int64_t> only) {
  PRESENCE_RETURN_IF_ERROR(CheckUserIds(only));
  ListAllPlan plan;
  plan.ids = IdsByOwner(map, only);
  for (size_t shard = 0; shard < map.size(); ++shard) {
    if (only.empty() || !plan.ids[shard].empty()) plan.shards.push_back(shard);
  }
  return plan;
}

// What leaves a shard out of a partial listing: it is down, overloaded or
// too slow. Anything else (a refused token, a map that is not the shards'
// own) would be as wrong on the next call, and fails the listing.
bool ShardIsDown(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<OnlineUsers> MergeListAll(
    const ShardMap& map, const ListAllPlan& plan, bool allow_missing,
    std::vector<absl::StatusOr<std::vector<int64_t>>> results) {
  OnlineUsers merged;
  size_t count = 0;
  for (const absl::StatusOr<std::vector<int64_t>>& users : results) {
    if (users.ok()) count += users->size();
  }
  merged.users.reserve(count);
  for (size_t p = 0; p < plan.shards.size(); ++p) {
    const Shard& shard = map.shard(plan.shards[p]);
    if (!results[p].ok()) {
      const absl::Status error = ShardError(shard, results[p].status());
      if (!ShardIsDown(error)) return error;
      merged.missing_shards.push_back(
          MissingShard{shard.name, shard.target, error});
      continue;
    }
    merged.users.insert(merged.users.end(), results[p]->begin(),
                        results[p]->end());
  }
  if (!merged.missing_shards.empty() &&
      (!allow_missing || merged.missing_shards.size() == plan.shards.size())) {
    return merged.missing_shards.front().status;
  }
  std::sort(merged.users.begin(), merged.users.end());
  merged.users.erase(std::unique(merged.users.begin(), merged.users.end()),
                     merged.users.end());
  return merged;
}

// Each shard of the plan's pages, followed on one completion queue, all
// shards at once.
std::vector<absl::StatusOr<std::vector<int64_t>>> ListEach(
    const AsyncCalls& calls, const ListAllPlan& plan) {
  using Call = QueuedCall<v1::ListOnlineResponse>;
  const size_t n = plan.shards.size();
  std::vector<absl::StatusOr<std::vector<int64_t>>> results(
      n, std::vector<int64_t>());
  std::vector<v1::ListOnlineRequest> requests(n);
  std::vector<std::unique_ptr<Call>> pending(n);
  grpc::CompletionQueue queue;
  auto start = [&](size_t i) {
    pending[i] =
        StartQueued(calls, plan.shards[i], &Stub::PrepareAsyncListOnline,
                    requests[i], calls.deadline(), &queue, Tag(i));
  };
  for (size_t i = 0; i < n; ++i) {
    const std::vector<int64_t>& ids = plan.ids[plan.shards[i]];
    requests[i].mutable_user_ids()->Add(ids.begin(), ids.end());
    requests[i].set_page_size(kMaxPageSize);
    start(i);
  }
  for (size_t running = n; running > 0;) {
    const size_t i = Next(&queue);
    Call& page = *pending[i];
    if (!page.status.ok()) {
      results[i] = ToStatus(page.status);
      --running;
      continue;
    }
    results[i]->insert(results[i]->end(), page.response.online_users().begin(),
                       page.response.online_users().end());
    if (page.response.next_page_token().empty()) {
      --running;
      continue;
    }
    requests[i].set_page_token(page.response.next_page_token());
    start(i);  // the page before is done with
  }
  Drain(&queue);
  return results;
}

bool Before(const google::protobuf::Timestamp& a,
            const google::protobuf::Timestamp& b) {
  return a.seconds() < b.seconds() ||
         (a.seconds() == b.seconds() && a.nanos() < b.nanos());
}

}  // namespace

// Each shard's ids of `ids`, in their order (empty for shards owning none).
std::vector<std::vector<int64_t>> IdsByOwner(const ShardMap& map,
                                             absl::Span<const int64_t> ids) {
  std::vector<std::vector<int64_t>> by_shard(map.size());
  for (int64_t id : ids) by_shard[map.OwnerIndex(id)].push_back(id);
  return by_shard;
}

// presenced's check of user_ids, made before splitting them so that the
// index it names is the caller's.
absl::Status CheckUserIds(absl::Span<const int64_t> ids) {
  for (int i = 0; i < static_cast<int>(ids.size()); ++i) {
    if (ids[i] <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("user_ids[", i, "] must be > 0, got ", ids[i]));
    }
  }
  return absl::OkStatus();
}

// Keeps in `latest` the latest of the server times seen.
void KeepLatest(const google::protobuf::Timestamp& time,
                google::protobuf::Timestamp* latest) {
  if (Before(*latest, time)) *latest = time;
}

absl::StatusOr<v1::BatchHeartbeatResponse> ShardedBatchHeartbeat(
    const AsyncCalls& calls, const v1::BatchHeartbeatRequest& request) {
  const ShardMap& map = calls.shard_map();
  BatchPlan plan = PlanBatch(map, request);
  return MergeBatch(map, plan,
                    CallEach(calls, &Stub::PrepareAsyncBatchHeartbeat,
                             plan.shards, plan.requests, calls.deadline()));
}

void ShardedBatchHeartbeatAsync(
    const std::shared_ptr<AsyncCalls>& calls, v1::BatchHeartbeatRequest request,
    Client::Callback<v1::BatchHeartbeatResponse> done) {
  const ShardMap& map = calls->shard_map();
  BatchPlan plan = PlanBatch(map, std::move(request));
  std::vector<v1::BatchHeartbeatRequest> requests = std::move(plan.requests);
  const std::vector<size_t> shards = plan.shards;
  CallEachAsync(calls, &Stub::async::BatchHeartbeat, shards,
                std::move(requests), std::nullopt,
                [&map, plan = std::move(plan), done = std::move(done)](
                    std::vector<absl::StatusOr<v1::BatchHeartbeatResponse>>
                        results) mutable {
                  std::move(done)(MergeBatch(map, plan, std::move(results)));
                });
}

absl::StatusOr<v1::GetPresenceResponse> ShardedGetPresence(
    const AsyncCalls& calls, const v1::GetPresenceRequest& request) {
  const ShardMap& map = calls.shard_map();
  absl::StatusOr<PresencePlan> plan = PlanPresence(map, request);
  if (!plan.ok()) return plan.status();
  return MergePresence(
      map, *plan,
      CallEach(calls, &Stub::PrepareAsyncGetPresence, plan->shards,
               plan->requests, calls.deadline()));
}

void ShardedGetPresenceAsync(const std::shared_ptr<AsyncCalls>& calls,
                             const v1::GetPresenceRequest& request,
                             Client::Callback<v1::GetPresenceResponse> done) {
  const ShardMap& map = calls->shard_map();
  absl::StatusOr<PresencePlan> plan = PlanPresence(map, request);
  if (!plan.ok()) return std::move(done)(plan.status());
  std::vector<v1::GetPresenceRequest> requests = std::move(plan->requests);
  const std::vector<size_t> shards = plan->shards;
  CallEachAsync(calls, &Stub::async::GetPresence, shards, std::move(requests),
                std::nullopt,
                [&map, plan = *std::move(plan), done = std::move(done)](
                    std::vector<absl::StatusOr<v1::GetPresenceResponse>>
                        results) mutable {
                  std::move(done)(MergePresence(map, plan, std::move(results)));
                });
}

absl::StatusOr<v1::ListOnlineResponse> ShardedListOnline(
    const AsyncCalls& calls, const v1::ListOnlineRequest& request) {
  const ShardMap& map = calls.shard_map();
  absl::StatusOr<PagePlan> plan = PlanPage(map, request);
  if (!plan.ok()) return plan.status();
  std::vector<absl::StatusOr<v1::ListOnlineResponse>> results =
      CallEach(calls, &Stub::PrepareAsyncListOnline, plan->shards,
               plan->requests, calls.deadline());
  return MergePage(map, *std::move(plan), results);
}

void ShardedListOnlineAsync(const std::shared_ptr<AsyncCalls>& calls,
                            v1::ListOnlineRequest request,
                            std::optional<absl::Duration> deadline,
                            Client::Callback<v1::ListOnlineResponse> done) {
  const ShardMap& map = calls->shard_map();
  absl::StatusOr<PagePlan> plan = PlanPage(map, request);
  if (!plan.ok()) return std::move(done)(plan.status());
  std::vector<v1::ListOnlineRequest> requests = std::move(plan->requests);
  const std::vector<size_t> shards = plan->shards;
  CallEachAsync(
      calls, &Stub::async::ListOnline, shards, std::move(requests), deadline,
      [&map, plan = *std::move(plan), done = std::move(done)](
          std::vector<absl::StatusOr<v1::ListOnlineResponse>> results) mutable {
        std::move(done)(MergePage(map, std::move(plan), results));
      });
}

absl::StatusOr<OnlineUsers> ShardedListAllOnline(const AsyncCalls& calls,
                                                 absl::Span<const int64_t> only,
                                                 bool allow_missing) {
  const ShardMap& map = calls.shard_map();
  absl::StatusOr<ListAllPlan> plan = PlanListAll(map, only);
  if (!plan.ok()) return plan.status();
  return MergeListAll(map, *plan, allow_missing, ListEach(calls, *plan));
}

void ShardedListAllOnlineAsync(const std::shared_ptr<AsyncCalls>& calls,
                               absl::Span<const int64_t> only,
                               bool allow_missing,
                               Client::Callback<OnlineUsers> done) {
  using Users = std::vector<int64_t>;
  const ShardMap& map = calls->shard_map();
  absl::StatusOr<ListAllPlan> plan = PlanListAll(map, only);
  if (!plan.ok()) return std::move(done)(plan.status());
  auto join = std::make_shared<Join<Users>>(
      plan->shards.size(),
      [&map, plan = *plan, allow_missing, done = std::move(done)](
          std::vector<absl::StatusOr<Users>> results) mutable {
        std::move(done)(
            MergeListAll(map, plan, allow_missing, std::move(results)));
      });
  for (size_t p = 0; p < plan->shards.size(); ++p) {
    const size_t shard = plan->shards[p];
    ListAllPagesAsync(calls, shard, plan->ids[shard],
                      Join<Users>::PartDone(join, p));
  }
}

}  // namespace presence::internal
