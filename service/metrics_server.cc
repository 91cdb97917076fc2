#include "service/metrics_server.h"

#include <CivetServer.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>

#include <exception>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace presence {
namespace {

// civetweb says why it cannot listen only through its log callback, which
// it calls on the thread that starts it. Start() points this at a string
// for that time; on civetweb's own threads it stays null.
thread_local std::string* startup_error = nullptr;

int CaptureStartupError(const mg_connection* /*connection*/,
                        const char* message) {
  if (startup_error == nullptr) return 0;  // civetweb's default: no log file
  // The first message is the reason; "Failed to setup server ports" follows.
  if (startup_error->empty()) *startup_error = message;
  return 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen,
    std::shared_ptr<prometheus::Collectable> collectable) {
  CivetCallbacks callbacks;
  callbacks.log_message = &CaptureStartupError;
  std::string reason;
  startup_error = &reason;
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2,
                                                    &callbacks);
  } catch (const std::exception& e) {
    // CivetServer throws CivetException when mg_start() fails.
    if (reason.empty()) reason = e.what();
  }
  startup_error = nullptr;
  const std::vector<int> ports =
      exposer != nullptr ? exposer->GetListeningPorts() : std::vector<int>();
  if (ports.empty()) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": ",
                     reason.empty() ? "no listening port" : reason));
  }
  exposer->RegisterCollectable(collectable);
  std::string address =
      absl::StrCat(listen.substr(0, listen.rfind(':')), ":", ports.front());
  return std::unique_ptr<MetricsServer>(new MetricsServer(
      std::move(collectable), std::move(exposer), std::move(address)));
}

MetricsServer::MetricsServer(
    std::shared_ptr<prometheus::Collectable> collectable,
    std::unique_ptr<prometheus::Exposer> exposer, std::string address)
    : collectable_(std::move(collectable)),
      exposer_(std::move(exposer)),
      address_(std::move(address)) {}

MetricsServer::~MetricsServer() = default;

}  // namespace presence
