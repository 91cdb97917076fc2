// Server reflection on a real presenced, in both versions clients speak:
// grpc.reflection.v1 (newer grpcurl, grpc-js, buf curl's first choice) and
// grpc.reflection.v1alpha (gRPC 1.51's own). Every case runs against each
// version, and v1's answers are compared with v1alpha's byte for byte.

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using presence::testing::RunningPresenced;
using presence::testing::StartPresenced;
using presence::testing::Subprocess;
using presence::testing::TempDir;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr char kToken[] = "ops-token-5b8e2d1f9a7c3e60";

struct V1 {
  using Api = grpc::reflection::v1::ServerReflection;
  using Request = grpc::reflection::v1::ServerReflectionRequest;
  using Response = grpc::reflection::v1::ServerReflectionResponse;
};
struct V1Alpha {
  using Api = grpc::reflection::v1alpha::ServerReflection;
  using Request = grpc::reflection::v1alpha::ServerReflectionRequest;
  using Response = grpc::reflection::v1alpha::ServerReflectionResponse;
};

// One ServerReflectionInfo stream of version V.
template <typename V>
class ReflectionStream {
 public:
  explicit ReflectionStream(const std::string& address,
                            const std::string& token = "") {
    stub_ = V::Api::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    if (!token.empty()) {
      context_.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
    stream_ = stub_->ServerReflectionInfo(&context_);
  }

  // The answer to `request`; fails the test if the stream ends instead.
  typename V::Response Ask(const typename V::Request& request) {
    typename V::Response response;
    EXPECT_TRUE(stream_->Write(request)) << "stream ended";
    EXPECT_TRUE(stream_->Read(&response)) << "stream ended";
    return response;
  }

  // The stream's end after the first request (for refused streams).
  grpc::Status Refusal() {
    typename V::Request request;
    request.set_list_services("*");
    stream_->Write(request);
    typename V::Response response;
    EXPECT_FALSE(stream_->Read(&response)) << response.DebugString();
    return stream_->Finish();
  }

  grpc::Status Close() {
    stream_->WritesDone();
    return stream_->Finish();
  }

  grpc::ClientReaderWriter<typename V::Request, typename V::Response>&
  stream() {
    return *stream_;
  }

 private:
  std::unique_ptr<typename V::Api::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<typename V::Request, typename V::Response>>
      stream_;
};

template <typename V>
typename V::Request ListServices() {
  typename V::Request request;
  request.set_list_services("*");
  return request;
}

template <typename V>
typename V::Request FileContainingSymbol(const std::string& symbol) {
  typename V::Request request;
  request.set_file_containing_symbol(symbol);
  return request;
}

template <typename V>
std::vector<std::string> ServiceNames(const typename V::Response& response) {
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  return names;
}

// The files of a file_descriptor_response, parsed.
template <typename V>
std::vector<google::protobuf::FileDescriptorProto> Files(
    const typename V::Response& response) {
  std::vector<google::protobuf::FileDescriptorProto> files;
  for (const std::string& bytes :
       response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    EXPECT_TRUE(file.ParseFromString(bytes));
    files.push_back(std::move(file));
  }
  return files;
}

template <typename V>
bool DescribesService(const typename V::Response& response,
                      const std::string& service) {
  for (const auto& file : Files<V>(response)) {
    for (const auto& s : file.service()) {
      if (file.package() + "." + s.name() == service) return true;
    }
  }
  return false;
}

template <typename V>
class ReflectionTest : public ::testing::Test {
 protected:
  RunningPresenced Start(std::vector<std::string> flags = {}) {
    flags.push_back("--db=" + dir_.File(absl::StrCat("p", ++servers_, ".db")));
    return StartPresenced(flags);
  }

  std::string WriteTokens() {
    const std::string path = dir_.File("tokens");
    FILE* file = fopen(path.c_str(), "w");
    EXPECT_NE(file, nullptr);
    fprintf(file, "ops %s\n", kToken);
    fclose(file);
    return path;
  }

  TempDir dir_;
  int servers_ = 0;
};

using Versions = ::testing::Types<V1, V1Alpha>;
TYPED_TEST_SUITE(ReflectionTest, Versions);

TYPED_TEST(ReflectionTest, ListsBothVersionsHealthAndTheApi) {
  RunningPresenced server = this->Start();
  ASSERT_FALSE(server.address.empty());
  ReflectionStream<TypeParam> stream(server.address);
  const auto listed = stream.Ask(ListServices<TypeParam>());
  EXPECT_THAT(ServiceNames<TypeParam>(listed),
              UnorderedElementsAre("grpc.health.v1.Health",
                                   "grpc.reflection.v1.ServerReflection",
                                   "grpc.reflection.v1alpha.ServerReflection",
                                   "presence.v1.PresenceService"));
  // Each answer carries its request: clients that pipeline match them so.
  EXPECT_EQ(listed.original_request().list_services(), "*");
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, DescribesEveryListedServiceOnOneStream) {
  RunningPresenced server = this->Start();
  ASSERT_FALSE(server.address.empty());
  ReflectionStream<TypeParam> stream(server.address);
  const auto listed = stream.Ask(ListServices<TypeParam>());
  const std::vector<std::string> services = ServiceNames<TypeParam>(listed);
  ASSERT_EQ(services.size(), 4u);
  for (const std::string& service : services) {
    const auto described = stream.Ask(FileContainingSymbol<TypeParam>(service));
    ASSERT_TRUE(described.has_file_descriptor_response())
        << service << ": " << described.error_response().error_message();
    EXPECT_TRUE(DescribesService<TypeParam>(described, service)) << service;
    EXPECT_EQ(described.original_request().file_containing_symbol(), service);
  }
  // Methods and messages are symbols too.
  for (const std::string symbol : {"presence.v1.PresenceService.WatchPresence",
                                   "presence.v1.HeartbeatRequest"}) {
    const auto described = stream.Ask(FileContainingSymbol<TypeParam>(symbol));
    ASSERT_TRUE(described.has_file_descriptor_response()) << symbol;
    EXPECT_EQ(Files<TypeParam>(described).front().name(),
              "presence/v1/presence.proto");
  }
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, FileByFilenameComesWithItsImports) {
  RunningPresenced server = this->Start();
  ASSERT_FALSE(server.address.empty());
  ReflectionStream<TypeParam> stream(server.address);
  typename TypeParam::Request request;
  request.set_file_by_filename("presence/v1/presence.proto");
  const auto answer = stream.Ask(request);
  ASSERT_TRUE(answer.has_file_descriptor_response())
      << answer.error_response().error_message();
  std::vector<std::string> names;
  for (const auto& file : Files<TypeParam>(answer))
    names.push_back(file.name());
  EXPECT_THAT(names, UnorderedElementsAre("presence/v1/presence.proto",
                                          "google/protobuf/duration.proto",
                                          "google/protobuf/timestamp.proto"));
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, AnUnknownSymbolIsAnErrorAndTheStreamGoesOn) {
  RunningPresenced server = this->Start();
  ASSERT_FALSE(server.address.empty());
  ReflectionStream<TypeParam> stream(server.address);
  const auto unknown =
      stream.Ask(FileContainingSymbol<TypeParam>("presence.v1.NoSuchService"));
  ASSERT_TRUE(unknown.has_error_response());
  EXPECT_EQ(unknown.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(ServiceNames<TypeParam>(stream.Ask(ListServices<TypeParam>())),
              Contains("presence.v1.PresenceService"));
  EXPECT_TRUE(stream.Close().ok());
}

TYPED_TEST(ReflectionTest, OffWithReflectionOffAndWithTokensByDefault) {
  RunningPresenced off = this->Start({"--reflection=off"});
  ASSERT_FALSE(off.address.empty());
  EXPECT_EQ(ReflectionStream<TypeParam>(off.address).Refusal().error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  RunningPresenced tokens =
      this->Start({"--auth_tokens_file=" + this->WriteTokens()});
  ASSERT_FALSE(tokens.address.empty());
  // With a valid token, so that what answers is the missing service.
  EXPECT_EQ(ReflectionStream<TypeParam>(tokens.address, kToken)
                .Refusal()
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TYPED_TEST(ReflectionTest, WithTokensAndReflectionOnItNeedsAToken) {
  RunningPresenced server = this->Start(
      {"--auth_tokens_file=" + this->WriteTokens(), "--reflection=on"});
  ASSERT_FALSE(server.address.empty());
  EXPECT_EQ(ReflectionStream<TypeParam>(server.address).Refusal().error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ReflectionStream<TypeParam>(server.address, "wrong-token-123456")
                .Refusal()
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  ReflectionStream<TypeParam> stream(server.address, kToken);
  EXPECT_THAT(ServiceNames<TypeParam>(stream.Ask(ListServices<TypeParam>())),
              Contains("grpc.reflection.v1.ServerReflection"));
  EXPECT_TRUE(stream.Close().ok());
}

// A client that keeps its reflection stream open (grpcurl and buf do, for
// the whole call) must not hold up presenced's shutdown.
TYPED_TEST(ReflectionTest, AnOpenStreamDoesNotHoldUpShutdown) {
  RunningPresenced server = this->Start();
  ASSERT_FALSE(server.address.empty());
  ReflectionStream<TypeParam> stream(server.address);
  stream.Ask(ListServices<TypeParam>());
  const absl::Time signalled = absl::Now();
  server.process->Signal(SIGTERM);
  Subprocess::Exit exit = server.process->Wait(absl::Seconds(20));
  EXPECT_EQ(exit.code, 0) << exit.err;
  EXPECT_THAT(exit.err, HasSubstr("stopped"));
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(3));
  typename TypeParam::Response response;
  EXPECT_FALSE(stream.stream().Read(&response));
  EXPECT_FALSE(stream.stream().Finish().ok());
}

// v1 is relayed to gRPC's v1alpha: the answers are the same bytes.
TEST(ReflectionV1Test, AnswersAreV1AlphasByteForByte) {
  TempDir dir;
  RunningPresenced server = StartPresenced({"--db=" + dir.File("p.db")});
  ASSERT_FALSE(server.address.empty());
  ReflectionStream<V1> v1(server.address);
  ReflectionStream<V1Alpha> v1alpha(server.address);
  auto same = [&](const auto& v1_request) {
    V1Alpha::Request v1alpha_request;
    ASSERT_TRUE(
        v1alpha_request.ParseFromString(v1_request.SerializeAsString()));
    EXPECT_EQ(v1.Ask(v1_request).SerializeAsString(),
              v1alpha.Ask(v1alpha_request).SerializeAsString())
        << v1_request.DebugString();
  };
  same(ListServices<V1>());
  same(FileContainingSymbol<V1>("presence.v1.PresenceService"));
  same(FileContainingSymbol<V1>("grpc.reflection.v1.ServerReflection"));
  same(FileContainingSymbol<V1>("grpc.health.v1.Health"));
  same(FileContainingSymbol<V1>("no.such.Symbol"));
  V1::Request extensions;
  extensions.set_all_extension_numbers_of_type("presence.v1.HeartbeatRequest");
  same(extensions);
  EXPECT_TRUE(v1.Close().ok());
  EXPECT_TRUE(v1alpha.Close().ok());
}

}  // namespace
}  // namespace presence
