#ifndef PRESENCE_TOOLS_PROCESS_SAMPLE_H_
#define PRESENCE_TOOLS_PROCESS_SAMPLE_H_

#include <cstdint>

namespace presence {

// A process's memory, threads and CPU time, from /proc/PID/status and
// /proc/PID/stat; -1 where a figure could not be read (the process is gone).
// For the benchmarks, the soak test and the tests that watch presenced or
// presence-rest from outside.
struct ProcessSample {
  int64_t rss_kb = -1;
  int64_t hwm_kb = -1;
  int64_t threads = -1;
  double cpu_seconds = -1;  // user + system
};

ProcessSample ReadProcess(int pid);

}  // namespace presence

#endif  // PRESENCE_TOOLS_PROCESS_SAMPLE_H_
