#include "service/program_usage.h"

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace presence {

void SetUpProgramUsage(absl::string_view flags_file, absl::string_view usage) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags =
      [file = std::string(flags_file)](absl::string_view path) {
        return absl::StrContains(path, file);
      };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
}

}  // namespace presence
