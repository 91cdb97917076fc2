// PresenceRegistry against its reference model (fuzz/registry_oracle.h), on
// seeded random operations: the comparison the registry fuzzer makes, run in
// every CTest pass (plain, ASan/UBSan) rather than only while fuzzing. Any
// difference in an answer, a recorded change or an event aborts with what
// differed (FUZZ_CHECK); the seed's line on stderr just before says which
// run to replay.

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fuzz/registry_comparison.h"
#include "gtest/gtest.h"

namespace presence::fuzz {
namespace {

// Few users and sessions, so that operations meet: the same session beats
// again, a logout ends what a heartbeat started, the session limit bites.
class RandomDriver {
 public:
  RandomDriver(uint32_t seed, RegistryComparison* registry)
      : rng_(seed), registry_(registry) {}

  void Step() {
    switch (Pick(0, 9)) {
      case 0:
      case 1:
      case 2:
        return registry_->Heartbeat(User(), Session());
      case 3:
        // "" ends every session of the user.
        return registry_->MarkOffline(User(), Pick(0, 2) == 0 ? "" : Session());
      case 4:
        return registry_->GetPresence({User(), User(), User()});
      case 5:
        return registry_->Sweep();
      case 6:
        registry_->ListPage({User(), User(), User()}, 0, Pick(1, 3));
        return;
      case 7:
        return ListEveryone(Pick(1, 4));
      case 8:
        // Up to a window and a half forward, now and then a step back (the
        // wall clock corrected), which the comparison allows for.
        return registry_->AdvanceTo(
            registry_->ClockNow() +
            (Pick(0, 19) == 0 ? -absl::Seconds(Pick(1, 20))
                              : absl::Milliseconds(Pick(0, 45'000))));
      default:
        return registry_->AdvanceTo(registry_->ClockNow() +
                                    registry_->window());
    }
  }

 private:
  int Pick(int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(rng_);
  }
  int64_t User() { return Pick(1, 6); }
  std::string Session() { return absl::StrCat("tab", Pick(0, 3)); }

  void ListEveryone(int page_size) {
    std::vector<int64_t> listed;
    int64_t after = 0;
    for (;;) {
      const OnlinePage page = registry_->ListEveryonePage(after, page_size);
      listed.insert(listed.end(), page.user_ids.begin(), page.user_ids.end());
      if (!page.has_more) break;
      after = page.user_ids.back();
    }
    registry_->CheckListedEveryone(listed);
  }

  std::mt19937 rng_;
  RegistryComparison* const registry_;
};

TEST(RegistryOracleTest, SeededRandomOperationsAgreeWithTheOracle) {
  constexpr int kSeeds = 60;
  constexpr int kSteps = 300;
  const absl::Time start = absl::FromUnixSeconds(1'800'000'000);
  for (uint32_t seed = 1; seed <= kSeeds; ++seed) {
    // FUZZ_CHECK aborts, so gtest's own trace would never be printed.
    std::fprintf(stderr, "registry_oracle_test: seed %u\n", seed);
    // Limits 0 (none) to 3, and a window with a sub-microsecond part some
    // of the time, which the registry must drop.
    RegistryComparison registry(
        start, absl::Seconds(30) + absl::Nanoseconds(seed % 2 == 0 ? 0 : 500),
        static_cast<int>(seed % 4));
    RandomDriver driver(seed, &registry);
    for (int step = 0; step < kSteps; ++step) {
      driver.Step();
      registry.CheckGlobal();
    }
    EXPECT_FALSE(registry.known_users().empty());
  }
}

}  // namespace
}  // namespace presence::fuzz
