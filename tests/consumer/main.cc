// Links presence::client from an install tree and calls presenced at
// argv[1]: exits 0 if the heartbeat was answered.
#include <cstdio>

#include "presence/client.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  presence::ClientOptions options;
  options.target = argv[1];
  presence::Client client(options);
  absl::StatusOr<presence::v1::HeartbeatResponse> r = client.Heartbeat(42);
  if (!r.ok()) {
    std::fprintf(stderr, "heartbeat: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf("became_online=%d\n", r->became_online());
  return 0;
}
