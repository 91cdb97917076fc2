#include "service/tls_files.h"

#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace presence {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;

constexpr absl::Duration kExpiryWarning = absl::Hours(14 * 24);
// A PEM file this large is not one: the bound keeps a wrong path such as
// /dev/zero from filling memory.
constexpr size_t kMaxFileBytes = 4 << 20;

// OpenSSL's errors stay in a per-thread queue until cleared: one left behind
// would be taken for the cause of a later, unrelated failure on this thread.
class ClearOpenSslErrorsOnExit {
 public:
  ClearOpenSslErrorsOnExit() = default;
  ClearOpenSslErrorsOnExit(const ClearOpenSslErrorsOnExit&) = delete;
  ClearOpenSslErrorsOnExit& operator=(const ClearOpenSslErrorsOnExit&) = delete;
  ~ClearOpenSslErrorsOnExit() { ERR_clear_error(); }
};

// " (OpenSSL: <the last error>)", or "" if there is none; clears the queue.
// The last error is the outermost one, e.g. "no start line" rather than the
// decoder's attempts that led to it.
std::string OpenSslReason() {
  const unsigned long error = ERR_peek_last_error();
  ERR_clear_error();
  if (error == 0) return "";
  char text[256];
  ERR_error_string_n(error, text, sizeof(text));
  return absl::StrCat(" (OpenSSL: ", text, ")");
}

std::string Named(absl::string_view flag, absl::string_view path) {
  return absl::StrCat("--", flag, " ", path);
}

std::string FormatDate(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

absl::StatusOr<std::string> ReadFile(absl::string_view flag,
                                     const std::string& path) {
  auto cannot_read = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read ", Named(flag, path), ": ", std::strerror(errno)));
  };
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cannot_read();
  std::string content;
  char buffer[16384];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status status = cannot_read();
      close(fd);
      return status;
    }
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > kMaxFileBytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat(Named(flag, path), ": larger than ", kMaxFileBytes >> 20,
                       " MiB, not a PEM file"));
    }
  }
  close(fd);
  return content;
}

BioPtr MemoryBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// presenced cannot ask for a passphrase: it runs unattended, and OpenSSL's
// default callback would wait on the terminal.
int RefusePassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

// Every certificate of a PEM file, in order, up to the end of the data. The
// error names `file` and says `none` if there is no certificate at all.
absl::StatusOr<std::vector<X509Ptr>> ReadCertificates(absl::string_view pem,
                                                      absl::string_view file,
                                                      absl::string_view none) {
  std::vector<X509Ptr> certs;
  BioPtr bio = MemoryBio(pem);
  if (bio == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(file, ": out of memory", OpenSslReason()));
  }
  // _AUX for the first, as OpenSSL's own chain loader and gRPC read it: it
  // also takes a "TRUSTED CERTIFICATE". A PEM block may claim to be
  // encrypted, even a certificate's: no passphrase is asked for either.
  bool asked = false;
  for (X509Ptr cert(
           PEM_read_bio_X509_AUX(bio.get(), nullptr, RefusePassphrase, &asked));
       cert != nullptr; cert.reset(
           PEM_read_bio_X509(bio.get(), nullptr, RefusePassphrase, &asked))) {
    certs.push_back(std::move(cert));
  }
  // Running out of PEM blocks ends the loop with "no start line"; any other
  // error is a certificate block that does not decode.
  const unsigned long last = ERR_peek_last_error();
  const bool at_end = ERR_GET_LIB(last) == ERR_LIB_PEM &&
                      ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", none, OpenSslReason()));
  }
  if (!at_end) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": certificate ", certs.size() + 1,
                     " of the file is not valid PEM", OpenSslReason()));
  }
  ERR_clear_error();
  return certs;
}

bool HoldsPrivateKey(absl::string_view pem) {
  BioPtr bio = MemoryBio(pem);
  bool asked = false;
  EvpPkeyPtr key(bio == nullptr
                     ? nullptr
                     : PEM_read_bio_PrivateKey(bio.get(), nullptr,
                                               RefusePassphrase, &asked));
  ERR_clear_error();
  return key != nullptr || asked;
}

bool HoldsCertificate(absl::string_view pem) {
  return ReadCertificates(pem, "", "").ok();
}

absl::Time ToTime(const ASN1_TIME* time) {
  struct tm tm = {};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1) {
    ERR_clear_error();
    return absl::InfinitePast();
  }
  return absl::FromCivil(
      absl::CivilSecond(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                        tm.tm_hour, tm.tm_min, tm.tm_sec),
      absl::UTCTimeZone());
}

std::string InDays(absl::Duration left) {
  const int64_t days = left / absl::Hours(24);
  if (days == 0) return "in less than a day";
  return absl::StrCat("in ", days, days == 1 ? " day" : " days");
}

absl::Status CheckLeaf(const std::string& cert_path, X509* leaf, absl::Time now,
                       TlsMaterial* material) {
  const std::string cert = Named("tls_cert", cert_path);
  const absl::Time not_before = ToTime(X509_get0_notBefore(leaf));
  material->not_after = ToTime(X509_get0_notAfter(leaf));
  if (material->not_after == absl::InfinitePast()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert, ": the certificate's expiry date is unreadable"));
  }
  // notAfter is the last second of validity, as OpenSSL's verifier has it.
  if (now > material->not_after) {
    return absl::InvalidArgumentError(absl::StrCat(
        cert, " expired on ", FormatDate(material->not_after), "; renew it"));
  }
  if (material->not_after - now < kExpiryWarning) {
    material->warnings.push_back(
        absl::StrCat(cert, " expires on ", FormatDate(material->not_after),
                     ", ", InDays(material->not_after - now), "; renew it"));
  }
  // A warning, not an error: the usual cause is a clock a little behind the
  // CA's, and clients will accept the certificate once it is valid.
  if (now < not_before) {
    material->warnings.push_back(absl::StrCat(
        cert, " is not valid before ", FormatDate(not_before),
        ": clients refuse it until then (is this machine's clock right?)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files,
                                            absl::Time now) {
  ClearOpenSslErrorsOnExit clear_errors;
  const std::string cert = Named("tls_cert", files.cert);
  const std::string key = Named("tls_key", files.key);
  const std::string client_ca = Named("tls_client_ca", files.client_ca);
  TlsMaterial material;

  absl::StatusOr<std::string> read = ReadFile("tls_cert", files.cert);
  if (!read.ok()) return read.status();
  material.cert_chain_pem = *std::move(read);
  absl::StatusOr<std::vector<X509Ptr>> chain = ReadCertificates(
      material.cert_chain_pem, cert, "no PEM certificate in it");
  if (!chain.ok()) {
    // The commonest mix-up gets its own hint.
    if (HoldsPrivateKey(material.cert_chain_pem)) {
      return absl::InvalidArgumentError(
          absl::StrCat(chain.status().message(),
                       "; it holds a private key (--tls_cert and --tls_key "
                       "swapped?)"));
    }
    return chain.status();
  }
  X509* const leaf = chain->front().get();

  read = ReadFile("tls_key", files.key);
  if (!read.ok()) return read.status();
  material.private_key_pem = *std::move(read);
  BioPtr bio = MemoryBio(material.private_key_pem);
  bool asked_passphrase = false;
  EvpPkeyPtr private_key(bio == nullptr
                             ? nullptr
                             : PEM_read_bio_PrivateKey(bio.get(), nullptr,
                                                       RefusePassphrase,
                                                       &asked_passphrase));
  if (private_key == nullptr) {
    const std::string reason = OpenSslReason();
    if (asked_passphrase) {
      return absl::InvalidArgumentError(
          absl::StrCat(key,
                       ": the private key is encrypted; presenced needs it "
                       "unencrypted (openssl pkey -in ENCRYPTED -out KEY)"));
    }
    const char* hint =
        HoldsCertificate(material.private_key_pem)
            ? "; it holds a certificate (--tls_cert and --tls_key swapped?)"
            : "";
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": no PEM private key in it", reason, hint));
  }
  if (X509_check_private_key(leaf, private_key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        key, " does not match the certificate in ", cert,
        " (the first certificate of the file must be the server's own)"));
  }
  if (absl::Status s = CheckLeaf(files.cert, leaf, now, &material); !s.ok()) {
    return s;
  }

  if (!files.client_ca.empty()) {
    read = ReadFile("tls_client_ca", files.client_ca);
    if (!read.ok()) return read.status();
    material.client_ca_pem = *std::move(read);
    absl::StatusOr<std::vector<X509Ptr>> cas = ReadCertificates(
        material.client_ca_pem, client_ca, "not a PEM CA certificate");
    if (!cas.ok()) return cas.status();
    // OpenSSL's verifier accepts an issuer only if it is a CA, so a file
    // without one would refuse every client.
    bool any_ca = false;
    for (const X509Ptr& ca : *cas) any_ca |= X509_check_ca(ca.get()) != 0;
    if (!any_ca) {
      return absl::InvalidArgumentError(absl::StrCat(
          client_ca, ": not a PEM CA certificate (", cas->size(),
          cas->size() == 1 ? " certificate" : " certificates",
          ", none with basicConstraints CA:TRUE); it must hold the CA that "
          "signs the clients' certificates"));
    }
  }
  return material;
}

}  // namespace presence
