// What service/presence_server.cc adds around the presence service: gRPC's
// health service (grpc.health.v1) and server reflection, on a real server on
// 127.0.0.1:0 (tests/server_fixture.h).

#include "service/presence_server.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/server_fixture.h"

namespace presence {
namespace {

using ServiceTest = testing::LoopbackServerTest;

// Shutdown turns health NOT_SERVING before it cuts connections, so a load
// balancer watching health stops sending calls before they are refused.
TEST_F(ServiceTest, HealthWatchersSeeNotServingWhenShutdownBegins) {
  auto channel = grpc::CreateChannel(server_->address(),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;  // the whole server
  auto watch = health->Watch(&context, request);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(watch->Read(&response));
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  std::thread stop([&] { EXPECT_TRUE(server_->Shutdown().ok()); });
  const bool read = watch->Read(&response);
  stop.join();
  ASSERT_TRUE(read) << "the watch ended without a status";
  EXPECT_EQ(response.status(),
            grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  context.TryCancel();
}

TEST_F(ServiceTest, HealthIsServingForTheServerAndOurService) {
  auto channel = grpc::CreateChannel(server_->address(),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* service : {"", "presence.v1.PresenceService"}) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(health->Check(&context, request, &response).ok()) << service;
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

TEST_F(ServiceTest, ReflectionListsAndDescribesOurServiceAndHealth) {
  using grpc::reflection::v1alpha::ServerReflection;
  using grpc::reflection::v1alpha::ServerReflectionRequest;
  using grpc::reflection::v1alpha::ServerReflectionResponse;
  auto channel = grpc::CreateChannel(server_->address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->ServerReflectionInfo(&context);

  ServerReflectionRequest list;
  list.set_list_services("*");
  ASSERT_TRUE(stream->Write(list));
  ServerReflectionResponse listed;
  ASSERT_TRUE(stream->Read(&listed));
  std::vector<std::string> services;
  for (const auto& s : listed.list_services_response().service()) {
    services.push_back(s.name());
  }
  EXPECT_NE(std::find(services.begin(), services.end(),
                      "presence.v1.PresenceService"),
            services.end());
  EXPECT_NE(
      std::find(services.begin(), services.end(), "grpc.health.v1.Health"),
      services.end());

  for (const std::string symbol :
       {"grpc.health.v1.Health", "presence.v1.PresenceService"}) {
    ServerReflectionRequest describe;
    describe.set_file_containing_symbol(symbol);
    ASSERT_TRUE(stream->Write(describe));
    ServerReflectionResponse described;
    ASSERT_TRUE(stream->Read(&described));
    ASSERT_TRUE(described.has_file_descriptor_response())
        << symbol << ": " << described.error_response().error_message();
    bool found = false;
    for (const std::string& bytes :
         described.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      ASSERT_TRUE(file.ParseFromString(bytes));
      for (const auto& service : file.service()) {
        found |= file.package() + "." + service.name() == symbol;
      }
    }
    EXPECT_TRUE(found) << symbol;
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace presence
