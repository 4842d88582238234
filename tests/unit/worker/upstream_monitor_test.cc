#include "worker/upstream_monitor.h"

#include <atomic>
#include <string>

#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom {
namespace {

using ::loom::testing::WaitFor;

TEST(UpstreamMonitorTest, RecordsTheProblemAndItsEnd) {
  absl::Status next = absl::UnavailableError("the model server at http://127.0.0.1:1 is not answering");
  UpstreamMonitor monitor({}, [&] { return next; });
  EXPECT_EQ(monitor.Problem(), "") << "nothing known before the first check";
  EXPECT_THAT(monitor.CheckNow(), ::testing::HasSubstr("not answering"));
  EXPECT_THAT(monitor.Problem(), ::testing::HasSubstr("not answering"));
  next = absl::OkStatus();
  EXPECT_EQ(monitor.CheckNow(), "");
  EXPECT_EQ(monitor.Problem(), "");
}

TEST(UpstreamMonitorTest, AProblemIsShortValidText) {
  std::string body(299, 'x');
  body += "\xC3\xA9 and \xFF more words than anyone needs";
  UpstreamMonitor monitor({}, [&] { return absl::UnavailableError(body); });
  const std::string problem = monitor.CheckNow();
  EXPECT_TRUE(IsValidUtf8(problem));
  EXPECT_LE(problem.size(), 300u);
}

TEST(UpstreamMonitorTest, ANudgeChecksAtOnceAndAFailingUpstreamIsRetried) {
  std::atomic<bool> healthy{false};
  // A long interval: only the backoff (short) and nudges can bring checks.
  UpstreamMonitor monitor({.interval = absl::Hours(1), .initial_backoff = absl::Milliseconds(1)},
                          [&] { return healthy ? absl::OkStatus() : absl::UnavailableError("down"); });
  monitor.CheckNow();
  monitor.Start();
  // Failing: checked again and again (backoff doubles, capped by the interval).
  ASSERT_TRUE(WaitFor([&] { return monitor.checks() >= 4; }, absl::Seconds(20)));
  healthy = true;
  ASSERT_TRUE(WaitFor([&] { return monitor.Problem().empty(); }, absl::Seconds(20)));
  // Healthy now: the next check is an hour away, unless nudged.
  const int before = monitor.checks();
  healthy = false;
  monitor.Nudge();
  ASSERT_TRUE(WaitFor([&] { return monitor.checks() > before; }, absl::Seconds(20)));
  EXPECT_EQ(monitor.Problem(), "down");
  monitor.Stop();
}

}  // namespace
}  // namespace loom
