#include "tools/reshard.h"

#include <chrono>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace presence {
namespace {

absl::Status ShardError(const Shard& shard, const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("shard ", shard.name, " (", shard.target,
                                   "): ", status.error_message()));
}

}  // namespace

absl::StatusOr<ReshardReport> Reshard(const ShardMap& map,
                                      const ClientOptions& connection,
                                      int batch_size) {
  if (!map.sharded()) {
    return absl::InvalidArgumentError(
        "reshard needs the shard map (NAME=HOST:PORT,... or a pattern), not "
        "one server's address");
  }
  // One unsharded client per shard: this tool talks to each shard itself.
  std::vector<std::unique_ptr<Client>> clients;
  for (const Shard& shard : map.shards()) {
    ClientOptions options = connection;
    options.target = shard.target;
    clients.push_back(std::make_unique<Client>(options));
  }
  auto deadline = [&] {
    return std::chrono::system_clock::now() +
           absl::ToChronoMilliseconds(connection.deadline);
  };
  ReshardReport report;
  std::map<std::pair<size_t, size_t>, ReshardReport::Move> moves;
  for (size_t from = 0; from < map.size(); ++from) {
    std::string token;
    do {
      v1::ListForeignUsersRequest request;
      request.set_page_size(batch_size);
      request.set_page_token(token);
      v1::ListForeignUsersResponse page;
      grpc::ClientContext context;
      context.set_deadline(deadline());
      if (grpc::Status s =
              clients[from]->stub().ListForeignUsers(&context, request, &page);
          !s.ok()) {
        return ShardError(map.shard(from), s);
      }
      std::map<size_t, v1::ImportLastSeenRequest> by_owner;
      for (const v1::UserLastSeen& user : page.users()) {
        const size_t owner = map.OwnerIndex(user.user_id());
        if (owner == from) {
          return absl::FailedPreconditionError(absl::StrCat(
              "shard ", map.shard(from).name, " set aside user ",
              user.user_id(),
              ", which the shard map given to reshard places on it: the map (",
              map.ToString(),
              ") is not the --shards the shards run with; give reshard the "
              "same shards"));
        }
        *by_owner[owner].add_users() = user;
      }
      for (auto& [owner, import] : by_owner) {
        v1::ImportLastSeenResponse response;
        grpc::ClientContext import_context;
        import_context.set_deadline(deadline());
        if (grpc::Status s = clients[owner]->stub().ImportLastSeen(
                &import_context, import, &response);
            !s.ok()) {
          return ShardError(map.shard(owner), s);
        }
        ReshardReport::Move& move = moves[{from, owner}];
        move.from = map.shard(from).name;
        move.to = map.shard(owner).name;
        move.users += import.users_size();
        move.updated += response.updated();
        report.users += import.users_size();
      }
      token = page.next_page_token();
    } while (!token.empty());
  }
  for (auto& [key, move] : moves) report.moves.push_back(std::move(move));
  return report;
}

}  // namespace presence
