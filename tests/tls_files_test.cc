// The certificates are made with the openssl command at test time, as in
// auth_tls_test.cc. Dates are tested through LoadTlsMaterial's `now`: the
// openssl command cannot backdate a certificate.
#include "service/tls_files.h"

#include <openssl/err.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using presence::testing::Subprocess;
using presence::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string Date(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

// A CA, a server certificate it signed (valid 30 days), a client certificate
// it signed (not a CA), and a self-signed certificate with its own key.
class TlsFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj",
             "/CN=ca", "-keyout", File("ca.key"), "-out", File("ca.pem")});
    MakeCert("server", "subjectAltName=DNS:localhost,IP:127.0.0.1");
    MakeCert("client", "extendedKeyUsage=clientAuth");
    OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj",
             "/CN=other", "-keyout", File("other.key"), "-out",
             File("other.pem")});
    not_before_ = CertDate("server.pem", "-startdate", "notBefore=");
    not_after_ = CertDate("server.pem", "-enddate", "notAfter=");
  }

  Subprocess::Exit OpenSsl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    Subprocess::Exit exit = presence::testing::Run(args);
    EXPECT_EQ(exit.code, 0) << exit.err;
    return exit;
  }
  void MakeCert(const std::string& name, const std::string& extension) {
    WriteFile(File(name + ".ext"), extension + "\n");
    OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-subj", "/CN=" + name, "-keyout", File(name + ".key"),
             "-out", File(name + ".csr")});
    OpenSsl({"x509", "-req", "-in", File(name + ".csr"), "-CA", File("ca.pem"),
             "-CAkey", File("ca.key"), "-CAcreateserial", "-days", "30",
             "-extfile", File(name + ".ext"), "-out", File(name + ".pem")});
  }
  // The date as the openssl command reads it, to check ours against.
  absl::Time CertDate(const std::string& cert, const std::string& option,
                      absl::string_view prefix) {
    Subprocess::Exit exit = OpenSsl(
        {"x509", "-in", File(cert), "-noout", option, "-dateopt", "iso_8601"});
    absl::string_view text = absl::StripAsciiWhitespace(exit.out);
    EXPECT_TRUE(absl::ConsumePrefix(&text, prefix)) << exit.out;
    absl::Time time;
    std::string error;
    EXPECT_TRUE(absl::ParseTime("%Y-%m-%d %H:%M:%SZ", std::string(text),
                                absl::UTCTimeZone(), &time, &error))
        << error << ": " << exit.out;
    return time;
  }
  std::string File(const std::string& name) { return dir_.File(name); }

  // --tls_cert server.pem --tls_key server.key [--tls_client_ca ...].
  absl::StatusOr<TlsMaterial> Load(const std::string& cert,
                                   const std::string& key,
                                   const std::string& client_ca = "",
                                   absl::Time now = absl::Now()) {
    absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(
        {File(cert), File(key), client_ca.empty() ? "" : File(client_ca)}, now);
    // Whatever happened, OpenSSL's error queue is left empty.
    EXPECT_EQ(ERR_peek_error(), 0u);
    return material;
  }

  TempDir dir_;
  absl::Time not_before_;
  absl::Time not_after_;
};

TEST_F(TlsFilesTest, AGoodPairLoads) {
  absl::StatusOr<TlsMaterial> material =
      Load("server.pem", "server.key", "ca.pem");
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->cert_chain_pem, ReadFile(File("server.pem")));
  EXPECT_EQ(material->private_key_pem, ReadFile(File("server.key")));
  EXPECT_EQ(material->client_ca_pem, ReadFile(File("ca.pem")));
  EXPECT_EQ(material->not_after, not_after_);
  EXPECT_THAT(material->warnings, IsEmpty());

  // Without mTLS.
  material = Load("server.pem", "server.key");
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->client_ca_pem, "");
}

TEST_F(TlsFilesTest, AChainLoadsAndItsFirstCertificateIsTheServers) {
  WriteFile(File("chain.pem"),
            ReadFile(File("server.pem")) + ReadFile(File("ca.pem")));
  absl::StatusOr<TlsMaterial> material = Load("chain.pem", "server.key");
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->not_after, not_after_);

  // The CA first: the key matches the second certificate, not the leaf.
  WriteFile(File("reversed.pem"),
            ReadFile(File("ca.pem")) + ReadFile(File("server.pem")));
  material = Load("reversed.pem", "server.key");
  ASSERT_FALSE(material.ok());
  EXPECT_THAT(std::string(material.status().message()),
              StartsWith(absl::StrCat("--tls_key ", File("server.key"),
                                      " does not match the certificate in "
                                      "--tls_cert ",
                                      File("reversed.pem"))));
}

TEST_F(TlsFilesTest, TheKeyOfAnotherCertificateIsRefusedNamingBothFiles) {
  absl::StatusOr<TlsMaterial> material = Load("server.pem", "other.key");
  ASSERT_FALSE(material.ok());
  EXPECT_EQ(material.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(material.status().message()),
              StartsWith(absl::StrCat("--tls_key ", File("other.key"),
                                      " does not match the certificate in "
                                      "--tls_cert ",
                                      File("server.pem"))));
}

TEST_F(TlsFilesTest, GarbageIsRefusedNamingTheFile) {
  WriteFile(File("garbage"), "this is not PEM\n");
  WriteFile(File("empty"), "");
  // A certificate block whose base64 does not decode.
  std::string broken = ReadFile(File("server.pem"));
  broken.replace(broken.find('\n') + 10, 8, "!!!!!!!!");
  WriteFile(File("broken.pem"), broken);
  // A good certificate followed by a broken one.
  WriteFile(File("half.pem"), ReadFile(File("server.pem")) + broken);

  struct Case {
    std::string cert, key, client_ca;
    std::string error;
  } cases[] = {
      {"garbage", "server.key", "",
       absl::StrCat("--tls_cert ", File("garbage"),
                    ": no PEM certificate in it (OpenSSL: error:")},
      {"empty", "server.key", "",
       absl::StrCat("--tls_cert ", File("empty"),
                    ": no PEM certificate in it")},
      {"broken.pem", "server.key", "",
       absl::StrCat("--tls_cert ", File("broken.pem"),
                    ": no PEM certificate in it (OpenSSL: error:")},
      {"half.pem", "server.key", "",
       absl::StrCat("--tls_cert ", File("half.pem"),
                    ": certificate 2 of the file is not valid PEM (OpenSSL: "
                    "error:")},
      {"server.pem", "garbage", "",
       absl::StrCat("--tls_key ", File("garbage"),
                    ": no PEM private key in it (OpenSSL: error:")},
      {"server.pem", "server.key", "garbage",
       absl::StrCat("--tls_client_ca ", File("garbage"),
                    ": not a PEM CA certificate (OpenSSL: error:")},
      {"server.pem", "server.key", "client.pem",
       absl::StrCat("--tls_client_ca ", File("client.pem"),
                    ": not a PEM CA certificate (1 certificate, none with "
                    "basicConstraints CA:TRUE)")},
      // Swapped flags get a hint.
      {"server.key", "server.pem", "",
       absl::StrCat("--tls_cert ", File("server.key"),
                    ": no PEM certificate in it (OpenSSL: error:")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.error);
    absl::StatusOr<TlsMaterial> material = Load(c.cert, c.key, c.client_ca);
    ASSERT_FALSE(material.ok());
    EXPECT_EQ(material.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(material.status().message()), StartsWith(c.error));
  }
  EXPECT_THAT(Load("server.key", "server.pem").status().message(),
              HasSubstr("it holds a private key (--tls_cert and --tls_key "
                        "swapped?)"));
  EXPECT_THAT(Load("server.pem", "server.pem").status().message(),
              HasSubstr("it holds a certificate (--tls_cert and --tls_key "
                        "swapped?)"));
}

TEST_F(TlsFilesTest, AnEncryptedKeyIsRefusedWithoutAskingForItsPassphrase) {
  OpenSsl({"pkey", "-in", File("server.key"), "-aes256", "-passout",
           "pass:secret", "-out", File("encrypted.key")});
  absl::StatusOr<TlsMaterial> material = Load("server.pem", "encrypted.key");
  ASSERT_FALSE(material.ok());
  EXPECT_THAT(std::string(material.status().message()),
              StartsWith(absl::StrCat("--tls_key ", File("encrypted.key"),
                                      ": the private key is encrypted")));
}

TEST_F(TlsFilesTest, AMissingFileIsNamed) {
  const std::string nothing = File("nothing.pem");
  struct Case {
    std::string cert, key, client_ca;
    std::string error;
  } cases[] = {
      {"nothing.pem", "server.key", "", "cannot read --tls_cert "},
      {"server.pem", "nothing.pem", "", "cannot read --tls_key "},
      {"server.pem", "server.key", "nothing.pem",
       "cannot read --tls_client_ca "},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TlsMaterial> material = Load(c.cert, c.key, c.client_ca);
    ASSERT_FALSE(material.ok());
    EXPECT_EQ(material.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(material.status().message(),
              c.error + nothing + ": No such file or directory");
  }
  absl::StatusOr<TlsMaterial> directory = Load(".", "server.key");
  ASSERT_FALSE(directory.ok());
  EXPECT_THAT(std::string(directory.status().message()),
              HasSubstr("cannot read --tls_cert "));
  EXPECT_THAT(std::string(directory.status().message()),
              HasSubstr(": Is a directory"));
}

TEST_F(TlsFilesTest, AnExpiredCertificateIsRefusedWithItsDate) {
  // Valid through its notAfter second.
  absl::StatusOr<TlsMaterial> material =
      Load("server.pem", "server.key", "", not_after_);
  ASSERT_TRUE(material.ok()) << material.status();

  material =
      Load("server.pem", "server.key", "", not_after_ + absl::Seconds(1));
  ASSERT_FALSE(material.ok());
  EXPECT_EQ(material.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(material.status().message(),
            absl::StrCat("--tls_cert ", File("server.pem"), " expired on ",
                         Date(not_after_), "; renew it"));

  material =
      Load("server.pem", "server.key", "",
           absl::FromCivil(absl::CivilDay(2100, 1, 1), absl::UTCTimeZone()));
  ASSERT_FALSE(material.ok());
  EXPECT_THAT(std::string(material.status().message()),
              HasSubstr("expired on"));
}

TEST_F(TlsFilesTest, WarnsWhenItExpiresWithinFourteenDays) {
  struct Case {
    absl::Duration before_expiry;
    std::vector<std::string> warnings;
  } cases[] = {
      {absl::Hours(15 * 24), {}},
      {absl::Hours(14 * 24) + absl::Seconds(1), {}},
      {absl::Hours(14 * 24) - absl::Seconds(1), {", in 13 days; renew it"}},
      {absl::Hours(3 * 24 + 5), {", in 3 days; renew it"}},
      {absl::Hours(24), {", in 1 day; renew it"}},
      {absl::Hours(2), {", in less than a day; renew it"}},
  };
  const std::string expires = absl::StrCat("--tls_cert ", File("server.pem"),
                                           " expires on ", Date(not_after_));
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::FormatDuration(c.before_expiry));
    absl::StatusOr<TlsMaterial> material =
        Load("server.pem", "server.key", "", not_after_ - c.before_expiry);
    ASSERT_TRUE(material.ok()) << material.status();
    std::vector<std::string> expected;
    for (const std::string& tail : c.warnings) {
      expected.push_back(expires + tail);
    }
    EXPECT_EQ(material->warnings, expected);
  }
}

TEST_F(TlsFilesTest, WarnsWhenItIsNotValidYet) {
  absl::StatusOr<TlsMaterial> material =
      Load("server.pem", "server.key", "", not_before_ - absl::Hours(1));
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_THAT(
      material->warnings,
      ElementsAre(AllOf(
          StartsWith(absl::StrCat("--tls_cert ", File("server.pem"),
                                  " is not valid before ", Date(not_before_))),
          HasSubstr("clock"))));
}

}  // namespace
}  // namespace presence
