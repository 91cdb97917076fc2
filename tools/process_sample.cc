#include "tools/process_sample.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace presence {

ProcessSample ReadProcess(int pid) {
  ProcessSample sample;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    std::vector<std::string> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t:"), absl::SkipEmpty());
    if (fields.size() < 2) continue;
    int64_t value = 0;
    if (!absl::SimpleAtoi(fields[1], &value)) continue;
    if (fields[0] == "VmRSS") sample.rss_kb = value;
    if (fields[0] == "VmHWM") sample.hwm_kb = value;
    if (fields[0] == "Threads") sample.threads = value;
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string all((std::istreambuf_iterator<char>(stat)),
                  std::istreambuf_iterator<char>());
  const size_t paren = all.rfind(')');
  if (paren != std::string::npos) {
    // After the command: state is field 3; utime and stime are 14 and 15.
    std::vector<std::string> fields =
        absl::StrSplit(all.substr(paren + 2), ' ');
    int64_t utime = 0, stime = 0;
    if (fields.size() > 12 && absl::SimpleAtoi(fields[11], &utime) &&
        absl::SimpleAtoi(fields[12], &stime)) {
      sample.cpu_seconds =
          static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
    }
  }
  return sample;
}

}  // namespace presence
