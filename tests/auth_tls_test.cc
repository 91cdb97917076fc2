// --auth_tokens_file, TLS and mTLS, on a real presenced: the certificates
// are made with the openssl command at test time.
#include <signal.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using presence::testing::RunningPresenced;
using presence::testing::StartPresenced;
using presence::testing::Subprocess;
using presence::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kDjangoToken[] = "django-3f9c2b7e5a1d4c8f";
constexpr char kRestToken[] = "rest-proxy-8e1f0a6b2c9d";

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::trunc) << content;
}

ClientOptions Options(const std::string& target, const std::string& token = "",
                      std::shared_ptr<grpc::ChannelCredentials> tls = nullptr) {
  ClientOptions options;
  options.target = target;
  options.token = token;
  options.credentials = std::move(tls);
  options.deadline = absl::Seconds(5);
  return options;
}

absl::StatusCode HeartbeatCode(const ClientOptions& options) {
  return Client(options).Heartbeat(42).status().code();
}

// Health/Check, with no token.
grpc::Status HealthCheck(const std::string& target,
                         std::shared_ptr<grpc::ChannelCredentials> credentials,
                         grpc::health::v1::HealthCheckResponse* response) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(target, credentials));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  return stub->Check(&context, {}, response);
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_ = dir_.File("tokens");
    // A comment has a line of its own: '#' elsewhere is part of a token.
    WriteFile(tokens_,
              absl::StrCat("# callers of presenced\n", "django ", kDjangoToken,
                           "\n\n", "  # the REST proxy\n", "rest\t", kRestToken,
                           "\n"));
  }

  TempDir dir_;
  std::string tokens_;
};

TEST_F(AuthTest, EveryPresenceCallNeedsAKnownToken) {
  RunningPresenced server = StartPresenced(
      {"--db=" + dir_.File("p.db"), "--auth_tokens_file=" + tokens_});
  ASSERT_FALSE(server.address.empty());

  Client anonymous(Options(server.address));
  absl::Status missing = anonymous.Heartbeat(42).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(missing.message(), HasSubstr("authorization: Bearer TOKEN"));
  EXPECT_EQ(anonymous.MarkOffline(42).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous.ListOnline({}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(anonymous.GetPresence(std::vector<int64_t>{42}).status().code(),
            absl::StatusCode::kUnauthenticated);
  v1::BatchHeartbeatRequest batch;
  batch.add_heartbeats()->set_user_id(42);
  EXPECT_EQ(anonymous.BatchHeartbeat(batch).status().code(),
            absl::StatusCode::kUnauthenticated);
  v1::SetStatusRequest status;
  status.set_user_id(42);
  status.set_availability(v1::AVAILABILITY_INVISIBLE);
  EXPECT_EQ(anonymous.SetStatus(status).status().code(),
            absl::StatusCode::kUnauthenticated);
  {
    grpc::ClientContext context;
    v1::WatchPresenceRequest request;
    auto reader = anonymous.stub().WatchPresence(&context, request);
    v1::WatchPresenceResponse message;
    EXPECT_FALSE(reader->Read(&message));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  absl::Status wrong =
      Client(Options(server.address, "django-3f9c2b7e5a1d4c8X"))
          .Heartbeat(42)
          .status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(wrong.message(), HasSubstr("invalid token"));

  // The refused calls changed nothing; the known callers get through.
  Client django(Options(server.address, kDjangoToken));
  absl::StatusOr<v1::GetPresenceResponse> presence =
      django.GetPresence(std::vector<int64_t>{42});
  ASSERT_TRUE(presence.ok()) << presence.status();
  EXPECT_EQ(presence->users(0).status(), v1::STATUS_OFFLINE);
  EXPECT_TRUE(django.Heartbeat(42).ok());
  EXPECT_EQ(HeartbeatCode(Options(server.address, kRestToken)),
            absl::StatusCode::kOk);

  // Health needs no token: load balancers and orchestrators ask it.
  grpc::health::v1::HealthCheckResponse health;
  ASSERT_TRUE(
      HealthCheck(server.address, grpc::InsecureChannelCredentials(), &health)
          .ok());
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // Callers are named in the log at their first call.
  EXPECT_TRUE(server.process->WaitForStderr(
      "caller 'django' authenticated from ipv4:127.0.0.1", absl::Seconds(5)));
  // Refusals are logged with the method, at most one line a second.
  EXPECT_TRUE(server.process->WaitForStderr(
      "refused a call to /presence.v1.PresenceService/", absl::Seconds(5)));
}

// With --auth_tokens_file reflection is off unless asked for, and then it
// needs a token like every call. buf curl (tools/install-deps.sh) is the
// third-party client.
TEST_F(AuthTest, ReflectionIsOffWithTokensUnlessAskedFor) {
  const std::string bearer =
      absl::StrCat("authorization: Bearer ", kDjangoToken);
  auto list_services = [&](const std::string& address, bool with_token) {
    std::vector<std::string> argv = {"/usr/bin/env", "buf",  "curl",
                                     "--protocol",   "grpc", "--list-services"};
    // buf sends -H headers with the call only; reflection needs its own.
    if (with_token) argv.insert(argv.end(), {"--reflect-header", bearer});
    argv.push_back("http://" + address);
    return presence::testing::Run(argv);
  };
  RunningPresenced locked = StartPresenced(
      {"--db=" + dir_.File("a.db"), "--auth_tokens_file=" + tokens_});
  ASSERT_FALSE(locked.address.empty());
  Subprocess::Exit refused = list_services(locked.address, true);
  EXPECT_NE(refused.code, 0);
  EXPECT_THAT(refused.err, HasSubstr("unimplemented"));

  RunningPresenced open =
      StartPresenced({"--db=" + dir_.File("b.db"),
                      "--auth_tokens_file=" + tokens_, "--reflection=on"});
  ASSERT_FALSE(open.address.empty());
  Subprocess::Exit anonymous = list_services(open.address, false);
  EXPECT_NE(anonymous.code, 0);
  // buf words gRPC's UNAUTHENTICATED as its own registry's login hint.
  EXPECT_THAT(anonymous.err, HasSubstr("not authenticated"));
  Subprocess::Exit listed = list_services(open.address, true);
  EXPECT_EQ(listed.code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("presence.v1.PresenceService"));
}

TEST_F(AuthTest, SighupReloadsTheTokensFile) {
  RunningPresenced server = StartPresenced(
      {"--db=" + dir_.File("p.db"), "--auth_tokens_file=" + tokens_});
  ASSERT_FALSE(server.address.empty());
  ASSERT_EQ(HeartbeatCode(Options(server.address, kRestToken)),
            absl::StatusCode::kOk);

  // The REST proxy's token is revoked and a new caller added.
  WriteFile(tokens_, absl::StrCat("django ", kDjangoToken,
                                  "\nops ops-token-7d2e9f1a4b6c\n"));
  server.process->Signal(SIGHUP);
  ASSERT_TRUE(server.process->WaitForStderr("SIGHUP: reloaded 2 callers",
                                            absl::Seconds(10)));
  EXPECT_EQ(HeartbeatCode(Options(server.address, kRestToken)),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(HeartbeatCode(Options(server.address, "ops-token-7d2e9f1a4b6c")),
            absl::StatusCode::kOk);

  // A broken file is refused and the callers stay as they were.
  WriteFile(tokens_, "django\n");
  server.process->Signal(SIGHUP);
  std::optional<std::string> err = server.process->WaitForStderr(
      "SIGHUP: kept the previous callers", absl::Seconds(10));
  ASSERT_TRUE(err.has_value());
  EXPECT_THAT(*err, HasSubstr(tokens_ + ":1: expected 'NAME TOKEN'"));
  EXPECT_EQ(HeartbeatCode(Options(server.address, "ops-token-7d2e9f1a4b6c")),
            absl::StatusCode::kOk);
}

TEST_F(AuthTest, ABadTokensFileStopsTheStart) {
  struct Case {
    std::string content;
    std::string error;
  } cases[] = {
      {absl::StrCat("django ", kDjangoToken, "  # the chat backend\n"),
       ":1: expected 'NAME TOKEN', got 6 fields: a token cannot contain white "
       "space"},
      {absl::StrCat("a ", kDjangoToken, "\nb ", kRestToken, "\na ",
                    "another-token-1234567\n"),
       ":3: caller 'a' appears twice"},
      {absl::StrCat("a ", kDjangoToken, "\nb ", kDjangoToken, "\n"),
       ":2: the token of 'b' is the token of 'a' (line 1) too"},
      {"# nobody\n", "no callers"},
  };
  for (const Case& c : cases) {
    WriteFile(tokens_, c.content);
    Subprocess::Exit exit = presence::testing::Run(
        {PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + dir_.File("p.db"),
         "--auth_tokens_file=" + tokens_});
    EXPECT_EQ(exit.code, 1) << c.content;
    EXPECT_THAT(exit.err, HasSubstr(c.error));
  }
  Subprocess::Exit missing = presence::testing::Run(
      {PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + dir_.File("p.db"),
       "--auth_tokens_file=" + dir_.File("nothing")});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("cannot read the tokens file"));
}

// The repro: a '#' inside a token is part of it (it used to cut the
// token, so the 16-byte prefix was accepted); a short token starts with a
// warning naming its line and caller, never the token.
TEST_F(AuthTest, AHashInsideATokenIsPartOfItAndShortTokensAreWarnedOf) {
  WriteFile(tokens_,
            "  # callers\nhash abcdefghijklmnop#qrstuvwxyz\nshort s3cr3t\n");
  RunningPresenced server = StartPresenced(
      {"--db=" + dir_.File("p.db"), "--auth_tokens_file=" + tokens_});
  ASSERT_FALSE(server.address.empty());
  EXPECT_EQ(
      HeartbeatCode(Options(server.address, "abcdefghijklmnop#qrstuvwxyz")),
      absl::StatusCode::kOk);
  EXPECT_EQ(HeartbeatCode(Options(server.address, "abcdefghijklmnop")),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(HeartbeatCode(Options(server.address, "s3cr3t")),
            absl::StatusCode::kOk);
  server.process->Signal(SIGTERM);
  const Subprocess::Exit exit = server.process->Wait();
  EXPECT_THAT(exit.err, HasSubstr("WARNING --auth_tokens_file: " + tokens_ +
                                  ":3: the token of 'short' is shorter than "
                                  "16 bytes"));
  EXPECT_THAT(exit.err, ::testing::Not(HasSubstr("s3cr3t")));
}

TEST_F(AuthTest, CallersAppearInMetricsAndPresencectlSendsTheToken) {
  RunningPresenced server = StartPresenced({"--db=" + dir_.File("p.db"),
                                            "--auth_tokens_file=" + tokens_,
                                            "--metrics_listen=127.0.0.1:0"});
  ASSERT_FALSE(server.address.empty());
  std::optional<std::string> err =
      server.process->WaitForStderr("metrics on http://", absl::Seconds(5));
  ASSERT_TRUE(err.has_value());
  size_t at = err->find("metrics on ") + 11;
  const std::string url = err->substr(at, err->find_first_of(" \n", at) - at);

  // presencectl takes the token from PRESENCE_TOKEN (or --token).
  Subprocess::Exit beat = presence::testing::Run(
      {"/usr/bin/env", absl::StrCat("PRESENCE_TOKEN=", kDjangoToken),
       PRESENCECTL_PATH, "--server=" + server.address, "heartbeat", "7"});
  EXPECT_EQ(beat.code, 0) << beat.err;
  Subprocess::Exit flag =
      presence::testing::Run({PRESENCECTL_PATH, "--server=" + server.address,
                              absl::StrCat("--token=", kDjangoToken), "list"});
  EXPECT_EQ(flag.code, 0) << flag.err;
  Subprocess::Exit none = presence::testing::Run(
      {"/usr/bin/env", "-u", "PRESENCE_TOKEN", PRESENCECTL_PATH,
       "--server=" + server.address, "list"});
  EXPECT_EQ(none.code, 1);
  EXPECT_THAT(none.err, HasSubstr("UNAUTHENTICATED"));

  Subprocess::Exit scrape =
      presence::testing::Run({"/usr/bin/curl", "-sf", url});
  ASSERT_EQ(scrape.code, 0) << scrape.err;
  EXPECT_THAT(scrape.out,
              HasSubstr("presence_caller_requests_total{caller=\"django\","
                        "method=\"Heartbeat\"} 1"));
  EXPECT_THAT(scrape.out,
              HasSubstr("presence_caller_requests_total{caller=\"django\","
                        "method=\"ListOnline\"} 1"));
  EXPECT_THAT(scrape.out, HasSubstr("code=\"UNAUTHENTICATED\""));
}

// A CA, a server certificate for 127.0.0.1 and localhost, a client
// certificate it signed, and a client certificate of another CA.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeCa("ca");
    MakeCa("other-ca");
    MakeCert("server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1");
    MakeCert("client", "ca", "extendedKeyUsage=clientAuth");
    MakeCert("stranger", "other-ca", "extendedKeyUsage=clientAuth");
  }

  void OpenSsl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    Subprocess::Exit exit = presence::testing::Run(args);
    ASSERT_EQ(exit.code, 0) << exit.err;
  }
  void MakeCa(const std::string& name) {
    OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
             "/CN=" + name, "-keyout", File(name + ".key"), "-out",
             File(name + ".pem")});
  }
  void MakeCert(const std::string& name, const std::string& ca,
                const std::string& extension) {
    WriteFile(File(name + ".ext"), extension + "\n");
    OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-subj", "/CN=" + name, "-keyout", File(name + ".key"),
             "-out", File(name + ".csr")});
    OpenSsl({"x509", "-req", "-in", File(name + ".csr"), "-CA",
             File(ca + ".pem"), "-CAkey", File(ca + ".key"), "-CAcreateserial",
             "-days", "1", "-extfile", File(name + ".ext"), "-out",
             File(name + ".pem")});
  }
  std::string File(const std::string& name) { return dir_.File(name); }
  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& cert = "") {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> tls =
        TlsCredentials(File("ca.pem"), cert.empty() ? "" : File(cert + ".pem"),
                       cert.empty() ? "" : File(cert + ".key"));
    EXPECT_TRUE(tls.ok()) << tls.status();
    return tls.ok() ? *tls : nullptr;
  }

  TempDir dir_;
};

TEST_F(TlsTest, ServesTlsToClientsThatTrustItsCa) {
  RunningPresenced server = StartPresenced({"--db=" + File("p.db"),
                                            "--tls_cert=" + File("server.pem"),
                                            "--tls_key=" + File("server.key")});
  ASSERT_FALSE(server.address.empty());
  EXPECT_EQ(HeartbeatCode(Options(server.address, "", Tls())),
            absl::StatusCode::kOk);
  // A plaintext client cannot speak to it.
  ClientOptions plaintext = Options(server.address);
  plaintext.deadline = absl::Seconds(2);
  EXPECT_EQ(HeartbeatCode(plaintext), absl::StatusCode::kUnavailable);
  // Health is served over TLS too, without a client certificate.
  grpc::health::v1::HealthCheckResponse health;
  EXPECT_TRUE(HealthCheck(server.address, Tls(), &health).ok());
  // presencectl takes the CA.
  Subprocess::Exit list =
      presence::testing::Run({PRESENCECTL_PATH, "--server=" + server.address,
                              "--tls_ca=" + File("ca.pem"), "list"});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("42"));
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutACertificateOfItsCa) {
  RunningPresenced server = StartPresenced(
      {"--db=" + File("p.db"), "--tls_cert=" + File("server.pem"),
       "--tls_key=" + File("server.key"), "--tls_client_ca=" + File("ca.pem")});
  ASSERT_FALSE(server.address.empty());
  EXPECT_EQ(HeartbeatCode(Options(server.address, "", Tls("client"))),
            absl::StatusCode::kOk);
  for (const char* refused : {"", "stranger"}) {
    ClientOptions options = Options(server.address, "", Tls(refused));
    options.deadline = absl::Seconds(2);
    EXPECT_EQ(HeartbeatCode(options), absl::StatusCode::kUnavailable)
        << "client certificate: '" << refused << "'";
  }
  Subprocess::Exit mtls = presence::testing::Run(
      {PRESENCECTL_PATH, "--server=" + server.address,
       "--tls_ca=" + File("ca.pem"), "--tls_cert=" + File("client.pem"),
       "--tls_key=" + File("client.key"), "get", "42"});
  EXPECT_EQ(mtls.code, 0) << mtls.err;
  EXPECT_THAT(mtls.out, HasSubstr("online"));
}

TEST_F(TlsTest, IncompleteTlsFlagsStopTheStart) {
  Subprocess::Exit no_key = presence::testing::Run(
      {PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + File("p.db"),
       "--tls_cert=" + File("server.pem")});
  EXPECT_EQ(no_key.code, 1);
  EXPECT_THAT(no_key.err, HasSubstr("TLS needs both --tls_cert and --tls_key"));
  Subprocess::Exit unreadable = presence::testing::Run(
      {PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + File("p.db"),
       "--tls_cert=" + File("nothing.pem"), "--tls_key=" + File("server.key")});
  EXPECT_EQ(unreadable.code, 1);
  EXPECT_THAT(unreadable.err, HasSubstr("cannot read --tls_cert"));
}

// Bad TLS material used to fail as "cannot listen on ...: the address is in
// use, not local, or not permitted". Now the file and the fault are named,
// before anything listens.
TEST_F(TlsTest, BadTlsFilesAreNamedAtStart) {
  WriteFile(File("garbage.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n");
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  for (const Case& c : {
           Case{{"--tls_cert=" + File("server.pem"),
                 "--tls_key=" + File("client.key")},
                "--tls_key " + File("client.key") +
                    " does not match the certificate in --tls_cert " +
                    File("server.pem")},
           Case{{"--tls_cert=" + File("garbage.pem"),
                 "--tls_key=" + File("server.key")},
                "--tls_cert " + File("garbage.pem") +
                    ": no PEM certificate in it"},
           Case{{"--tls_cert=" + File("server.pem"),
                 "--tls_key=" + File("server.key"),
                 "--tls_client_ca=" + File("garbage.pem")},
                "--tls_client_ca " + File("garbage.pem")},
       }) {
    std::vector<std::string> argv = {PRESENCED_PATH, "--listen=127.0.0.1:0",
                                     "--db=" + File("p.db")};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    const Subprocess::Exit exit = presence::testing::Run(argv);
    EXPECT_EQ(exit.code, 1) << exit.err;
    EXPECT_THAT(exit.err, HasSubstr(c.message));
    EXPECT_THAT(exit.err, ::testing::Not(HasSubstr("cannot listen")));
  }
  // A good pair starts, and says until when the certificate is valid; the
  // token check works over TLS as over plaintext.
  WriteFile(File("tokens"), absl::StrCat("django ", kDjangoToken, "\n"));
  RunningPresenced server = StartPresenced(
      {"--db=" + File("p.db"), "--tls_cert=" + File("server.pem"),
       "--tls_key=" + File("server.key"),
       "--auth_tokens_file=" + File("tokens")});
  ASSERT_FALSE(server.address.empty());
  EXPECT_TRUE(server.process->WaitForStderr(
      "TLS with " + File("server.pem") + " (valid until ", absl::Seconds(5)));
  EXPECT_EQ(HeartbeatCode(Options(server.address, "", Tls())),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(HeartbeatCode(Options(server.address, kDjangoToken, Tls())),
            absl::StatusCode::kOk);
}

}  // namespace
}  // namespace presence
