#ifndef PRESENCE_TOOLS_SOAK_OPTIONS_H_
#define PRESENCE_TOOLS_SOAK_OPTIONS_H_

// What one soak run does (tools/soak/README.md). main.cc reads every flag
// once into a SoakOptions, and the rest of the program gets its values from
// here, never from a flag. Each member is the flag of the same name, whose
// help text is in main.cc; the defaults here are the flags' defaults, so
// that each default is written once. They are the full run of soak.sh.
// A plain value: copy it freely.

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace presence::soak {

struct SoakOptions {
  std::string server = "127.0.0.1:50051";
  int server_pid = 0;  // 0: presenced's /proc is not sampled
  std::string csv;     // empty: the samples go nowhere
  double seconds = 600;

  // The load.
  int64_t users = 100'000;
  int batch = 500;
  double unary_fraction = 0.02;
  double churn_per_minute = 0.02;
  double tab_churn_per_minute = 0.02;
  int load_threads = 8;
  absl::Duration tick = absl::Milliseconds(100);
  absl::Duration deadline = absl::Seconds(30);

  // The watchers, and how they are disrupted.
  int watchers = 1000;
  double everyone_fraction = 0.1;
  int subset_size = 1000;
  int watch_connections = 20;
  absl::Duration cut_every = absl::Seconds(5);
  absl::Duration cut_all_every = absl::Seconds(60);
  absl::Duration recreate_every = absl::Seconds(2);

  // The samples and the report.
  absl::Duration sample_every = absl::Seconds(5);
  absl::Duration progress_every = absl::Seconds(60);
  absl::Duration warmup = absl::ZeroDuration();  // 0: two online windows
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_OPTIONS_H_
