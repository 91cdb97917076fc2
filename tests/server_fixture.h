// A real PresenceServer in the test's process, on 127.0.0.1:0 with a SQLite
// file in a fresh directory and a FakeClock for the time rules, and a
// presence::Client of it: the fixture of the tests that drive presenced
// through gRPC.
#ifndef PRESENCE_TESTS_SERVER_FIXTURE_H_
#define PRESENCE_TESTS_SERVER_FIXTURE_H_

#include <memory>

#include "gtest/gtest.h"
#include "presence/client.h"
#include "service/clock.h"
#include "service/presence_server.h"
#include "tests/test_util.h"

namespace presence::testing {

class LoopbackServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  // Starts the server (again, on the same database, after a reset of
  // server_) and a new client_ of it. `options.listen` defaults to
  // 127.0.0.1:0, `options.clock` to clock_; db_path is always the fixture's.
  void Start(ServerOptions options = {});

  FakeClock clock_;
  TempDir dir_;
  std::unique_ptr<PresenceServer> server_;
  std::unique_ptr<Client> client_;
};

}  // namespace presence::testing

#endif  // PRESENCE_TESTS_SERVER_FIXTURE_H_
