#include "service/server_credentials.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include <chrono>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/log.h"

namespace presence {
namespace {

absl::string_view View(const grpc_slice& slice) {
  return absl::string_view(
      reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
      GRPC_SLICE_LENGTH(slice));
}

// The state of the auth metadata processor.
struct TokenCheck {
  TokenCheck(const CallerAuth* auth, ServerMetrics* metrics)
      : auth(auth), metrics(metrics) {}
  const CallerAuth* const auth;
  ServerMetrics* const metrics;
  ThrottledErrorLog refusals;
};

// Runs on gRPC's thread as the call's headers arrive, and answers at once:
// the check is a SHA-256 and a few comparisons, nothing that blocks.
void Process(void* state, grpc_auth_context* /*context*/,
             const grpc_metadata* md, size_t num_md,
             grpc_process_auth_metadata_done_cb done, void* user_data) {
  auto* check = static_cast<TokenCheck*>(state);
  absl::string_view method;
  absl::string_view authorization;
  for (size_t i = 0; i < num_md; ++i) {
    const absl::string_view key = View(md[i].key);
    if (key == ":path") {
      method = View(md[i].value);
    } else if (key == "authorization") {
      authorization = View(md[i].value);
    }
  }
  if (absl::StartsWith(method, "/grpc.health.v1.Health/")) {
    done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
    return;
  }
  absl::StatusOr<std::shared_ptr<Caller>> caller =
      check->auth->Authenticate(authorization);
  if (caller.ok()) {
    done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
    return;
  }
  if (std::optional<Rpc> rpc = RpcOfMethodPath(method);
      rpc.has_value() && check->metrics != nullptr) {
    // Refused at once, before any handler: no time spent to speak of.
    check->metrics->RecordRpc(*rpc, grpc::StatusCode::UNAUTHENTICATED,
                              std::chrono::nanoseconds(0));
  }
  check->refusals.Log(absl::StrCat("refused a call to ",
                                   method.empty() ? "(no method)" : method,
                                   ": ", caller.status().message()));
  const std::string message(caller.status().message());
  done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_UNAUTHENTICATED,
       message.c_str());
}

// grpc::ServerCredentials around core credentials. Only gRPC's Server calls
// AddPortToServer(), which its ServerCredentials base makes private.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  CoreServerCredentials(const TlsMaterial* tls, const CallerAuth* auth,
                        ServerMetrics* metrics) {
    // After the base constructor, which has initialised gRPC.
    if (tls == nullptr) {
      creds_ = grpc_insecure_server_credentials_create();
    } else {
      grpc_ssl_pem_key_cert_pair pair = {tls->private_key_pem.c_str(),
                                         tls->cert_chain_pem.c_str()};
      const bool mutual = !tls->client_ca_pem.empty();
      creds_ = grpc_ssl_server_credentials_create_ex(
          mutual ? tls->client_ca_pem.c_str() : nullptr, &pair, 1,
          mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                 : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
          nullptr);
    }
    if (auth != nullptr) {
      grpc_auth_metadata_processor processor;
      processor.process = &Process;
      processor.destroy = [](void* state) {
        delete static_cast<TokenCheck*>(state);
      };
      processor.state = new TokenCheck(auth, metrics);
      grpc_server_credentials_set_auth_metadata_processor(creds_, processor);
    }
  }
  ~CoreServerCredentials() override { grpc_server_credentials_release(creds_); }
  CoreServerCredentials(const CoreServerCredentials&) = delete;
  CoreServerCredentials& operator=(const CoreServerCredentials&) = delete;

  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& /*processor*/)
      override {
    // The token check is set at construction; nothing else in presenced sets
    // one.
    LogError("SetAuthMetadataProcessor on presenced's credentials: ignored");
  }

 private:
  // For an external connection acceptor ("external:N") gRPC answers 0
  // whether or not it took the credentials, and fails only if it cannot make
  // a security connector of them: for TLS, material that OpenSSL rejects,
  // which LoadTlsMaterial() has already refused at start.
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  grpc_server_credentials* creds_ = nullptr;
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsMaterial* tls, const CallerAuth* auth, ServerMetrics* metrics) {
  return std::make_shared<CoreServerCredentials>(tls, auth, metrics);
}

}  // namespace presence
