// presencectl: a command line for presenced. See `presencectl --help`.

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "presence/client.h"
#include "presence/shard_map.h"
#include "presence/watcher.h"
#include "service/program_usage.h"
#include "tools/presencectl_format.h"
#include "tools/reshard.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "presenced's HOST:PORT, or a sharded deployment's shard map: "
          "NAME=HOST:PORT,... or a pattern such as "
          "presenced-{0..2}.presenced.NAMESPACE.svc:50051 (calls go to each "
          "user's shard).");
ABSL_FLAG(bool, json, false,
          "Print the server's answer as JSON (protobuf's JSON mapping: 64-bit "
          "ids are strings) instead of text.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5),
          "Deadline of each call to presenced.");
ABSL_FLAG(std::string, session, "",
          "heartbeat/offline: the session id. Empty: the default session for "
          "heartbeat; every session of the user for offline.");
ABSL_FLAG(std::vector<std::string>, users, {},
          "list, watch: only these user ids (comma-separated).");
ABSL_FLAG(bool, idle, false,
          "heartbeat: the user did not use this session since its previous "
          "heartbeat (a user whose sessions all stay idle for presenced's "
          "--away_after is away).");
ABSL_FLAG(bool, dnd, false,
          "status: do not disturb (others see dnd while the user is online).");
ABSL_FLAG(bool, invisible, false,
          "status: invisible (others see offline; the user sees the truth).");
ABSL_FLAG(bool, auto, false,
          "status: back to automatic (online, away or offline by activity).");
ABSL_FLAG(std::string, until, "",
          "status: when --dnd or --invisible ends: an RFC 3339 time "
          "(2026-11-28T10:30:00Z) or a duration from presenced's now (90m).");
ABSL_FLAG(std::string, text, "",
          "status: custom status text (up to 100 characters).");
ABSL_FLAG(std::string, emoji, "",
          "status: custom status emoji, a :short_code: or one emoji.");
ABSL_FLAG(std::string, expires, "",
          "status: when the custom status of --text/--emoji clears itself "
          "(RFC 3339 time or duration, as --until).");
ABSL_FLAG(bool, clear, false, "status: remove the custom status.");
ABSL_FLAG(int64_t, viewer, 0,
          "get: read as this user: their own entry is their own view (the "
          "truth while invisible), the others' what others see.");
ABSL_FLAG(bool, rich, false,
          "watch: also status changes of online users (away, dnd) and custom "
          "status changes, not only online/offline.");
ABSL_FLAG(std::string, token, "",
          "Bearer token for presenced's --auth_tokens_file. Default: the "
          "PRESENCE_TOKEN environment variable (safer: a flag shows in ps).");
ABSL_FLAG(std::string, tls_ca, "",
          "Speak TLS to presenced, trusting this CA certificate (PEM). "
          "Implied (with the system's roots) by --tls_cert.");
ABSL_FLAG(std::string, tls_cert, "",
          "mTLS: this client certificate (PEM), with --tls_key.");
ABSL_FLAG(std::string, tls_key, "", "mTLS: the client certificate's key.");

namespace {

constexpr char kUsage[] =
    "presencectl: talk to presenced.\n\n"
    "  presencectl heartbeat USER [--session=S] [--idle]\n"
    "                                             mark a session present\n"
    "  presencectl offline USER [--session=S]     end one session, or all\n"
    "  presencectl status USER --dnd|--invisible|--auto [--until=TIME]\n"
    "                     [--text=TEXT] [--emoji=EMOJI] [--expires=TIME]\n"
    "                     set availability and/or custom status; TIME is\n"
    "                     RFC 3339 or a duration such as 90m\n"
    "  presencectl status USER --clear            remove the custom status\n"
    "  presencectl list [--users=1,2,3]           online users, ascending\n"
    "  presencectl get USER... [--viewer=USER]    presence of each user\n"
    "  presencectl watch [--users=1,2,3] [--rich] print changes as they "
    "happen,\n"
    "                                             until Ctrl-C\n"
    "  presencectl shard USER...                  the shard that owns each "
    "user\n"
    "                                             (by --server's shard map)\n"
    "  presencectl reshard                        after --shards changed: hand "
    "the\n"
    "                                             users each shard set aside "
    "to\n"
    "                                             their owners "
    "(docs/scale-out.md)\n\n"
    "Common flags: --server=HOST:PORT (default 127.0.0.1:50051), --json, "
    "--timeout=5s.\n"
    "Exit status: 0 done, 1 presenced answered an error or could not be "
    "reached, 2 bad usage.";

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

int UsageError(const std::string& message) {
  std::fprintf(stderr, "presencectl: %s\nRun 'presencectl --help' for usage.\n",
               message.c_str());
  return kExitUsage;
}

int RpcError(const absl::Status& status) {
  const std::string server = absl::GetFlag(FLAGS_server);
  if (status.code() == absl::StatusCode::kUnavailable ||
      status.code() == absl::StatusCode::kDeadlineExceeded) {
    std::fprintf(stderr,
                 "presencectl: cannot reach presenced at %s (%s: %s). Is it "
                 "running? Pass --server=HOST:PORT to use another address.\n",
                 server.c_str(),
                 absl::StatusCodeToString(status.code()).c_str(),
                 std::string(status.message()).c_str());
  } else {
    std::fprintf(stderr, "presencectl: presenced at %s answered %s: %s\n",
                 server.c_str(),
                 absl::StatusCodeToString(status.code()).c_str(),
                 std::string(status.message()).c_str());
  }
  return kExitError;
}

bool ParseUserId(absl::string_view text, int64_t* id) {
  return absl::SimpleAtoi(text, id) && *id > 0;
}

int PrintJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options)
           .ok()) {
    std::fprintf(stderr, "presencectl: cannot print the answer as JSON\n");
    return kExitError;
  }
  std::printf("%s\n", json.c_str());
  return 0;
}

int Heartbeat(presence::Client& client, int64_t user) {
  const std::string session = absl::GetFlag(FLAGS_session);
  absl::StatusOr<presence::v1::HeartbeatResponse> r =
      client.Heartbeat(user, session, absl::GetFlag(FLAGS_idle));
  if (!r.ok()) return RpcError(r.status());
  if (absl::GetFlag(FLAGS_json)) return PrintJson(*r);
  const absl::Duration interval = presence::FromProto(r->heartbeat_interval());
  std::printf(
      "%lld online%s until %s; next heartbeat within %s\n",
      static_cast<long long>(user), r->became_online() ? " (was offline)" : "",
      presence::FormatIsoTime(presence::FromProto(r->online_until())).c_str(),
      absl::FormatDuration(interval).c_str());
  return 0;
}

int Offline(presence::Client& client, int64_t user) {
  const std::string session = absl::GetFlag(FLAGS_session);
  absl::StatusOr<presence::v1::MarkOfflineResponse> r =
      client.MarkOffline(user, session);
  if (!r.ok()) return RpcError(r.status());
  if (absl::GetFlag(FLAGS_json)) return PrintJson(*r);
  std::printf(
      "%lld %s; ended %d session%s\n", static_cast<long long>(user),
      r->still_online() ? "still online (another session is live)" : "offline",
      r->sessions_ended(), r->sessions_ended() == 1 ? "" : "s");
  return 0;
}

// The ids of --users, or a usage error.
absl::StatusOr<std::vector<int64_t>> UsersFlag() {
  std::vector<int64_t> only;
  for (const std::string& text : absl::GetFlag(FLAGS_users)) {
    int64_t id;
    if (!ParseUserId(text, &id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--users: '", text, "' is not a user id (an integer > 0)"));
    }
    only.push_back(id);
  }
  return only;
}

int List(presence::Client& client) {
  absl::StatusOr<std::vector<int64_t>> users = UsersFlag();
  if (!users.ok()) return UsageError(std::string(users.status().message()));
  const std::vector<int64_t>& only = *users;
  // Page through by hand to keep the first page's server_time and count.
  presence::v1::ListOnlineRequest request;
  request.mutable_user_ids()->Add(only.begin(), only.end());
  presence::v1::ListOnlineResponse all;
  do {
    absl::StatusOr<presence::v1::ListOnlineResponse> page =
        client.ListOnline(request);
    if (!page.ok()) return RpcError(page.status());
    if (!all.has_server_time()) {
      *all.mutable_server_time() = page->server_time();
      all.set_total_online(page->total_online());
    }
    all.mutable_online_users()->MergeFrom(page->online_users());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  if (absl::GetFlag(FLAGS_json)) return PrintJson(all);
  for (int64_t id : all.online_users()) {
    std::printf("%lld\n", static_cast<long long>(id));
  }
  std::printf(
      "(%d online at %s)\n", all.online_users_size(),
      presence::FormatIsoTime(presence::FromProto(all.server_time())).c_str());
  return 0;
}

// The flags of `status`, checked (and turned into a request) by
// presence::StatusRequest.
presence::StatusFlags StatusFlagsGiven() {
  presence::StatusFlags flags;
  flags.dnd = absl::GetFlag(FLAGS_dnd);
  flags.invisible = absl::GetFlag(FLAGS_invisible);
  flags.automatic = absl::GetFlag(FLAGS_auto);
  flags.until = absl::GetFlag(FLAGS_until);
  flags.text = absl::GetFlag(FLAGS_text);
  flags.emoji = absl::GetFlag(FLAGS_emoji);
  flags.expires = absl::GetFlag(FLAGS_expires);
  flags.clear = absl::GetFlag(FLAGS_clear);
  return flags;
}

int SetStatus(presence::Client& client,
              const presence::v1::SetStatusRequest& request) {
  absl::StatusOr<presence::v1::SetStatusResponse> r = client.SetStatus(request);
  if (!r.ok()) return RpcError(r.status());
  if (absl::GetFlag(FLAGS_json)) return PrintJson(*r);
  std::printf("%s\n", presence::FormatStatusLine(*r).c_str());
  return 0;
}

int Get(presence::Client& client, const std::vector<int64_t>& users) {
  presence::v1::GetPresenceRequest request;
  request.mutable_user_ids()->Add(users.begin(), users.end());
  request.set_viewer_user_id(absl::GetFlag(FLAGS_viewer));
  // A person reading the table wants away and dnd told apart from online.
  request.set_rich_status(true);
  absl::StatusOr<presence::v1::GetPresenceResponse> r =
      client.GetPresence(request);
  if (!r.ok()) return RpcError(r.status());
  if (absl::GetFlag(FLAGS_json)) return PrintJson(*r);
  std::printf("%s", presence::FormatPresenceTable(*r).c_str());
  return 0;
}

// Needs no server: the owner is the hash's, over --server's shard map.
int ShardOf(const presence::ShardMap& map, const std::vector<int64_t>& users) {
  for (int64_t user : users) {
    const presence::Shard& owner = map.shard(map.OwnerIndex(user));
    if (absl::GetFlag(FLAGS_json)) {
      std::printf("{\"userId\":\"%lld\",\"shard\":\"%s\",\"target\":\"%s\"}\n",
                  static_cast<long long>(user), owner.name.c_str(),
                  owner.target.c_str());
    } else if (map.sharded()) {
      std::printf("%lld\t%s\t%s\n", static_cast<long long>(user),
                  owner.name.c_str(), owner.target.c_str());
    } else {
      std::printf("%lld\t(unsharded)\t%s\n", static_cast<long long>(user),
                  owner.target.c_str());
    }
  }
  return 0;
}

int RunReshard(const presence::ShardMap& map,
               const presence::ClientOptions& connection) {
  absl::StatusOr<presence::ReshardReport> report =
      presence::Reshard(map, connection);
  if (!report.ok()) {
    std::fprintf(stderr, "presencectl: reshard stopped: %s: %s\n",
                 absl::StatusCodeToString(report.status().code()).c_str(),
                 std::string(report.status().message()).c_str());
    return kExitError;
  }
  for (const presence::ReshardReport::Move& move : report->moves) {
    std::printf("%s -> %s: %lld users handed over, last_seen raised for %lld\n",
                move.from.c_str(), move.to.c_str(),
                static_cast<long long>(move.users),
                static_cast<long long>(move.updated));
  }
  std::printf("%lld users handed over in all\n",
              static_cast<long long>(report->users));
  return 0;
}

void PrintLine(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);  // one event, one line, at once, also into a pipe
}

int Watch(presence::Client& client) {
  absl::StatusOr<std::vector<int64_t>> users = UsersFlag();
  if (!users.ok()) return UsageError(std::string(users.status().message()));
  const bool json = absl::GetFlag(FLAGS_json);

  // Only sigwait() below receives these; block them before the watcher's
  // thread starts so that it inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // the watcher gave up
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  presence::WatcherOptions options;
  options.user_ids = *users;
  options.rich_status = absl::GetFlag(FLAGS_rich);
  presence::WatcherCallbacks callbacks;
  if (json) {
    // One line per event: a batch of changes is printed change by change.
    callbacks.on_message =
        [](const presence::v1::WatchPresenceResponse& message) {
          for (const presence::v1::WatchPresenceResponse& event :
               presence::WatchEventsOf(message)) {
            PrintJson(event);
          }
          std::fflush(stdout);
        };
  }
  callbacks.on_snapshot = [json](const presence::v1::Snapshot& snapshot) {
    if (json) return;
    PrintLine(absl::StrCat(
        presence::FormatIsoTime(presence::FromProto(snapshot.server_time())),
        " ", presence::FormatSnapshot(snapshot)));
  };
  callbacks.on_change = [json](const presence::v1::PresenceChange& change) {
    if (json) return;
    PrintLine(
        absl::StrCat(presence::FormatIsoTime(presence::FromProto(change.at())),
                     " ", presence::FormatChange(change)));
  };
  const std::string server = absl::GetFlag(FLAGS_server);
  callbacks.on_disconnect = [server](const absl::Status& status,
                                     absl::Duration retry_in) {
    if (retry_in == absl::InfiniteDuration()) {
      std::fprintf(stderr, "presencectl: presenced at %s answered %s: %s\n",
                   server.c_str(),
                   absl::StatusCodeToString(status.code()).c_str(),
                   std::string(status.message()).c_str());
      kill(getpid(), SIGUSR1);  // wakes sigwait() below: give up
      return;
    }
    std::fprintf(stderr,
                 "presencectl: watch of %s ended (%s: %s); reconnecting in "
                 "%s\n",
                 server.c_str(),
                 absl::StatusCodeToString(status.code()).c_str(),
                 std::string(status.message()).c_str(),
                 absl::FormatDuration(retry_in).c_str());
  };
  presence::Watcher watcher(client, options, callbacks);
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  watcher.Stop();
  return signal_number == SIGUSR1 ? kExitError : 0;
}

// The USER arguments after the command, or a usage error.
absl::StatusOr<std::vector<int64_t>> UserArgs(const std::vector<char*>& args) {
  std::vector<int64_t> users;
  for (size_t i = 2; i < args.size(); ++i) {
    int64_t id;
    if (!ParseUserId(args[i], &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", args[i], "' is not a user id (an integer > 0)"));
    }
    users.push_back(id);
  }
  return users;
}

// How to reach presenced, from the flags (the token also from
// PRESENCE_TOKEN), or a usage error.
absl::StatusOr<presence::ClientOptions> ConnectionFromFlags() {
  presence::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  options.deadline = absl::GetFlag(FLAGS_timeout);
  options.token = absl::GetFlag(FLAGS_token);
  if (options.token.empty()) {
    if (const char* token = std::getenv("PRESENCE_TOKEN"))
      options.token = token;
  }
  const std::string tls_ca = absl::GetFlag(FLAGS_tls_ca);
  const std::string tls_cert = absl::GetFlag(FLAGS_tls_cert);
  if (!tls_ca.empty() || !tls_cert.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> tls =
        presence::TlsCredentials(tls_ca, tls_cert,
                                 absl::GetFlag(FLAGS_tls_key));
    if (!tls.ok()) return tls.status();
    options.credentials = *std::move(tls);
  }
  return options;
}

// shard and reshard, which need --server's shard map rather than a client.
int RunShardCommand(const std::string& command, const presence::ShardMap& map,
                    const std::vector<int64_t>& users,
                    const presence::ClientOptions& connection) {
  if (command == "shard") {
    if (users.empty()) return UsageError("shard takes one or more USER ids");
    return ShardOf(map, users);
  }
  if (!users.empty()) return UsageError("reshard takes no USER");
  if (!map.sharded()) {
    return UsageError(
        "reshard needs the shard map in --server (NAME=HOST:PORT,... or a "
        "pattern such as presenced-{0..2}.presenced.NAMESPACE.svc:50051), "
        "not one server's address");
  }
  return RunReshard(map, connection);
}

// The commands that call presenced through `client`.
int RunClientCommand(presence::Client& client, const std::string& command,
                     const std::vector<int64_t>& users) {
  if (command == "status") {
    if (users.size() != 1) return UsageError("status takes exactly one USER");
    absl::StatusOr<presence::v1::SetStatusRequest> request =
        presence::StatusRequest(users[0], StatusFlagsGiven());
    if (!request.ok()) {
      return UsageError(std::string(request.status().message()));
    }
    return SetStatus(client, *request);
  }
  if (command == "heartbeat" || command == "offline") {
    if (users.size() != 1) {
      return UsageError(absl::StrCat(command, " takes exactly one USER"));
    }
    return command == "heartbeat" ? Heartbeat(client, users[0])
                                  : Offline(client, users[0]);
  }
  if (command == "list") {
    if (!users.empty()) {
      return UsageError("list takes no USER; use --users=1,2,3 to filter");
    }
    return List(client);
  }
  if (command == "watch") {
    if (!users.empty()) {
      return UsageError("watch takes no USER; use --users=1,2,3 to filter");
    }
    return Watch(client);
  }
  if (command == "get") {
    if (users.empty()) return UsageError("get takes one or more USER ids");
    if (absl::GetFlag(FLAGS_viewer) < 0) {
      return UsageError("--viewer: a user id is an integer > 0");
    }
    return Get(client, users);
  }
  return UsageError(absl::StrCat("unknown command '", command, "'"));
}

}  // namespace

int main(int argc, char** argv) {
  presence::SetUpProgramUsage("presencectl", kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return UsageError("no command given");
  const std::string command = args[1];
  absl::StatusOr<std::vector<int64_t>> users = UserArgs(args);
  if (!users.ok()) return UsageError(std::string(users.status().message()));
  absl::StatusOr<presence::ClientOptions> options = ConnectionFromFlags();
  if (!options.ok()) return UsageError(std::string(options.status().message()));
  // A map that does not parse would otherwise be taken as one gRPC target.
  absl::StatusOr<presence::ShardMap> map =
      presence::ShardMap::Parse(options->target);
  if (!map.ok()) {
    return UsageError(absl::StrCat("--server: ", map.status().message()));
  }
  if (command == "shard" || command == "reshard") {
    return RunShardCommand(command, *map, *users, *options);
  }
  presence::Client client(*options);
  return RunClientCommand(client, command, *users);
}
