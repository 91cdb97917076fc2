// presence-rest: the chat frontends' REST endpoints and live Server-Sent
// Events, backed by presenced. See gateway/README.md.

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gateway/rest_server.h"
#include "presence/shard_map.h"
#include "service/log.h"
#include "service/program_usage.h"
#include "service/status_macros.h"

namespace {

// The flags' defaults are RestOptions' (gateway/rest_server.h), and
// ClientOptions' for presenced: one place.
const presence::rest::RestOptions& Defaults() {
  static const presence::rest::RestOptions* const defaults =
      new presence::rest::RestOptions();
  return *defaults;
}

}  // namespace

ABSL_FLAG(std::string, listen, Defaults().listen,
          "HOST:PORT to serve HTTP on. Port 0 picks a free port; the "
          "'serving on' log line names it.");
ABSL_FLAG(
    std::string, server, Defaults().presenced.target,
    "HOST:PORT of presenced, or a sharded deployment's shard map: "
    "NAME=HOST:PORT,... or a pattern such as "
    "presenced-{0..2}.presenced.NAMESPACE.svc:50051 (docs/scale-out.md).");
ABSL_FLAG(std::string, jwt_secret_file, "",
          "File holding the HS256 secret that signs callers' JWTs (Django's "
          "SIMPLE_JWT SIGNING_KEY, by default its SECRET_KEY). Required. One "
          "trailing newline is ignored.");
ABSL_FLAG(absl::Duration, deadline, Defaults().presenced.deadline,
          "Deadline of each call to presenced.");
ABSL_FLAG(int32_t, max_event_streams,
          static_cast<int32_t>(Defaults().max_event_streams),
          "The most open /api/chat/presence/stream connections; more are "
          "answered 503.");
ABSL_FLAG(absl::Duration, keepalive, Defaults().keepalive,
          "How often each event stream gets a keep-alive comment.");
ABSL_FLAG(std::string, cors_origins, "",
          "Origins whose pages may call presence-rest from the browser (CORS), "
          "comma-separated, each exactly scheme://host[:port], e.g. "
          "https://chat.example.com,http://localhost:3000. Empty: same-origin "
          "pages only.");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT to serve Prometheus metrics on, at /metrics. Empty: no "
          "metrics.");
ABSL_FLAG(absl::Duration, upstream_check_interval,
          Defaults().upstream_check_interval,
          "While the WatchPresence stream is live, presenced must answer a "
          "small call this often, within the same time; otherwise the stream "
          "counts as lost (a hung presenced sends no error).");
ABSL_FLAG(std::string, presenced_token_file, "",
          "File holding presence-rest's own bearer token for presenced's "
          "--auth_tokens_file. Empty: none.");
ABSL_FLAG(std::string, presenced_tls_ca, "",
          "Speak TLS to presenced, trusting this CA certificate (PEM).");
ABSL_FLAG(std::string, presenced_tls_cert, "",
          "mTLS to presenced: this client certificate (PEM), with "
          "--presenced_tls_key.");
ABSL_FLAG(std::string, presenced_tls_key, "",
          "mTLS to presenced: the client certificate's key (PEM).");

namespace {

constexpr char kUsage[] =
    "presence-rest: the chat REST endpoints and live presence events for "
    "browsers, backed by presenced.\n\n"
    "  presence-rest --jwt_secret_file=PATH [--listen=127.0.0.1:8080] "
    "[--server=127.0.0.1:50051]\n\n"
    "SIGTERM or SIGINT ends every event stream and exits 0.";

// Each browser holds a connection, and each a descriptor: the usual soft
// limit of 1024 would refuse the 1021st browser while the hard limit allows
// far more.
void RaiseOpenFileLimit() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    presence::LogError(
        absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
    return;
  }
  const rlim_t soft = limit.rlim_cur;
  if (soft == limit.rlim_max) {
    presence::LogInfo(
        absl::StrCat("open-file limit: ", soft, " (already the hard limit)"));
    return;
  }
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    presence::LogError(absl::StrCat("cannot raise the open-file limit from ",
                                    soft, " to ", limit.rlim_max, ": ",
                                    std::strerror(errno)));
    return;
  }
  presence::LogInfo(absl::StrCat("open-file limit raised from ", soft,
                                 " to the hard limit, ", limit.rlim_max));
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "presence-rest: %s\n", message.c_str());
  return 1;
}

// A secret kept in a file (so that it shows neither in ps nor in a unit
// file), without one trailing newline.
absl::StatusOr<std::string> ReadSecret(const std::string& flag,
                                       const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read --", flag, " ", path, ": ", std::strerror(errno)));
  }
  std::stringstream content;
  content << in.rdbuf();
  const std::string whole = content.str();
  absl::string_view secret = whole;
  if (!absl::ConsumeSuffix(&secret, "\r\n")) absl::ConsumeSuffix(&secret, "\n");
  if (secret.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--", flag, " ", path, " is empty"));
  }
  return std::string(secret);
}

// How to reach presenced: --server, --deadline, and its token and TLS.
absl::Status ReadPresencedFlags(presence::ClientOptions* presenced) {
  presenced->target = absl::GetFlag(FLAGS_server);
  // A map that does not parse would otherwise be taken as one gRPC target,
  // and the gateway would start only to stay stale.
  if (absl::StatusOr<presence::ShardMap> map =
          presence::ShardMap::Parse(presenced->target);
      !map.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--server: ", map.status().message()));
  }
  presenced->deadline = absl::GetFlag(FLAGS_deadline);
  return absl::OkStatus();
}

// presenced's token and TLS, each from files.
absl::Status ReadPresencedCredentials(presence::ClientOptions* presenced) {
  if (const std::string path = absl::GetFlag(FLAGS_presenced_token_file);
      !path.empty()) {
    PRESENCE_ASSIGN_OR_RETURN(presenced->token,
                              ReadSecret("presenced_token_file", path));
  }
  const std::string tls_ca = absl::GetFlag(FLAGS_presenced_tls_ca);
  const std::string tls_cert = absl::GetFlag(FLAGS_presenced_tls_cert);
  if (!tls_ca.empty() || !tls_cert.empty()) {
    PRESENCE_ASSIGN_OR_RETURN(
        presenced->credentials,
        presence::TlsCredentials(tls_ca, tls_cert,
                                 absl::GetFlag(FLAGS_presenced_tls_key)));
  }
  return absl::OkStatus();
}

// The serving flags: event streams, CORS, metrics and the upstream check.
absl::Status ReadServingFlags(presence::rest::RestOptions* options) {
  const int32_t max_event_streams = absl::GetFlag(FLAGS_max_event_streams);
  if (max_event_streams < 0) {
    return absl::InvalidArgumentError("--max_event_streams must be >= 0");
  }
  options->max_event_streams = max_event_streams;
  options->keepalive = absl::GetFlag(FLAGS_keepalive);
  if (options->keepalive <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--keepalive must be > 0");
  }
  options->cors_origins = absl::GetFlag(FLAGS_cors_origins);
  options->metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options->upstream_check_interval =
      absl::GetFlag(FLAGS_upstream_check_interval);
  if (options->upstream_check_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--upstream_check_interval must be > 0");
  }
  return absl::OkStatus();
}

// The JWT secret, which --jwt_secret_file must name.
absl::StatusOr<std::string> ReadJwtSecret() {
  const std::string secret_file = absl::GetFlag(FLAGS_jwt_secret_file);
  if (secret_file.empty()) {
    return absl::InvalidArgumentError(
        "--jwt_secret_file is required (the HS256 key of the JWTs)");
  }
  return ReadSecret("jwt_secret_file", secret_file);
}

// Every flag, checked, with the secrets read from their files. The error
// message is what to tell the operator.
absl::StatusOr<presence::rest::RestOptions> OptionsFromFlags() {
  presence::rest::RestOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  PRESENCE_RETURN_IF_ERROR(ReadPresencedFlags(&options.presenced));
  PRESENCE_RETURN_IF_ERROR(ReadServingFlags(&options));
  PRESENCE_ASSIGN_OR_RETURN(options.jwt_secret, ReadJwtSecret());
  PRESENCE_RETURN_IF_ERROR(ReadPresencedCredentials(&options.presenced));
  return options;
}

// Serves until SIGTERM or SIGINT, then ends every event stream.
int ServeUntilSignal(const presence::rest::RestOptions& options) {
  // Blocked before the server's threads start, so that they inherit the
  // mask and only sigwait() below receives these.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<presence::rest::RestServer>> server =
      presence::rest::RestServer::Start(options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  presence::LogInfo(absl::StrCat("serving on ", host, ":", (*server)->port(),
                                 " (presenced at ", options.presenced.target,
                                 ")"));
  if (const std::string metrics = (*server)->metrics_address();
      !metrics.empty()) {
    presence::LogInfo(absl::StrCat("metrics on http://", metrics, "/metrics"));
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  presence::LogInfo(
      absl::StrCat("received ", strsignal(signal_number), ", shutting down"));
  (*server)->Shutdown();
  presence::LogInfo("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  presence::SetUpProgramUsage("gateway/main", kUsage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    return Fail(absl::StrCat("unexpected argument '", rest[1],
                             "'; flags are --name=value, see --help"));
  }
  absl::StatusOr<presence::rest::RestOptions> options = OptionsFromFlags();
  if (!options.ok()) return Fail(std::string(options.status().message()));

  RaiseOpenFileLimit();
  return ServeUntilSignal(*options);
}
