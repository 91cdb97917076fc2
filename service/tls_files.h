// The PEM files of --tls_cert, --tls_key and --tls_client_ca, checked at
// start so that a bad file is named before presenced listens (gRPC itself
// reports only that it could not listen).
#ifndef PRESENCE_SERVICE_TLS_FILES_H_
#define PRESENCE_SERVICE_TLS_FILES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace presence {

// Paths. client_ca may be empty (no mTLS).
struct TlsFiles {
  std::string cert;
  std::string key;
  std::string client_ca;
};

// The files' contents, for grpc::SslServerCredentialsOptions, and what is
// known of the server certificate.
struct TlsMaterial {
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::string client_ca_pem;  // empty when files.client_ca is
  absl::Time not_after;       // of the leaf (first) certificate of the chain
  // To log at start: the leaf expires within 14 days of `now`, or is not
  // valid yet. One line each, naming the flag, the file and the date.
  std::vector<std::string> warnings;
};

// Reads and checks the files with OpenSSL: the certificate file holds one or
// more PEM certificates (the leaf first), the key file an unencrypted PEM
// private key that matches the leaf, the client CA file one or more PEM
// certificates of which at least one is a CA; the leaf has not expired at
// `now`. Errors are INVALID_ARGUMENT naming the flag, the file and what is
// wrong, with OpenSSL's reason where it helps, e.g.
// "--tls_key K does not match the certificate in --tls_cert C (...)",
// "--tls_cert C expired on 2026-11-20T10:00:00Z; renew it",
// "cannot read --tls_key K: No such file or directory".
// Leaves this thread's OpenSSL error queue empty. Thread-safe.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files,
                                            absl::Time now);

}  // namespace presence

#endif  // PRESENCE_SERVICE_TLS_FILES_H_
