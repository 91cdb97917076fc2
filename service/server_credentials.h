// The credentials presenced listens with: plaintext or TLS, and, with
// --auth_tokens_file, a bearer-token check on every call's initial metadata.
#ifndef PRESENCE_SERVICE_SERVER_CREDENTIALS_H_
#define PRESENCE_SERVICE_SERVER_CREDENTIALS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "service/caller_auth.h"
#include "service/metrics.h"
#include "service/tls_files.h"

namespace presence {

// Server credentials, TLS with `tls` (null: plaintext), that authenticate
// every call with `auth` (null: none) as its headers arrive, before gRPC reads
// or parses the request message: a call without a known caller's token is
// refused UNAUTHENTICATED at that point, so an unauthenticated peer costs
// presenced a header's worth of memory, not a 4 MB message and its parse.
// Calls to grpc.health.v1.Health need no token (load balancers and
// Kubernetes probe it without one). Refusals are logged at most once a
// second, with a count of those not logged, and counted in `metrics` (if not
// null) as calls answered UNAUTHENTICATED.
//
// gRPC runs such a check (an auth metadata processor) for plaintext channels
// too, but the C++ InsecureServerCredentials() of gRPC 1.51 takes none; so
// these wrap core credentials made with gRPC's C API.
//
// `auth` and `metrics` must outlive every server that uses the credentials.
// With `tls`, `tls->client_ca_pem` non-empty requires and verifies client
// certificates.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsMaterial* tls, const CallerAuth* auth, ServerMetrics* metrics);

}  // namespace presence

#endif  // PRESENCE_SERVICE_SERVER_CREDENTIALS_H_
