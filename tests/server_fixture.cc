#include "tests/server_fixture.h"

#include <utility>

namespace presence::testing {

void LoopbackServerTest::Start(ServerOptions options) {
  if (options.listen == ServerOptions().listen) options.listen = "127.0.0.1:0";
  options.db_path = dir_.File("presence.db");
  if (options.clock == nullptr) options.clock = &clock_;
  absl::StatusOr<std::unique_ptr<PresenceServer>> server =
      PresenceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  ClientOptions client_options;
  client_options.target = server_->address();
  client_ = std::make_unique<Client>(client_options);
}

}  // namespace presence::testing
