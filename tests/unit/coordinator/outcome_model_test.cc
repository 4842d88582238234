#include "coordinator/mesh/outcome_model.h"

#include <set>

#include "coordinator/mesh/model_selector.h"
#include "gmock/gmock.h"
#include "ledger/sqlite_ledger.h"
#include "gtest/gtest.h"
#include "tests/fakes/mesh_fixture.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
constexpr auto kCode = v1::TASK_CATEGORY_CODE;

TEST(OutcomeModelTest, NoObservationsMeansThePrior) {
  OutcomeModel m;
  BlendedAffinity b = m.Blend(0.7, "llama", kCode);
  EXPECT_DOUBLE_EQ(b.blended, 0.7);
  EXPECT_DOUBLE_EQ(b.prior, 0.7);
  EXPECT_EQ(b.observed.good + b.observed.bad, 0);
}

TEST(OutcomeModelTest, GoodOutcomesRaiseBadOnesLowerWithinBounds) {
  OutcomeModel m({.prior_strength = 20, .max_shift = 0.2});
  m.Observe("llama", kCode, true);
  const double one_good = m.Blend(0.7, "llama", kCode).blended;
  EXPECT_GT(one_good, 0.7);
  EXPECT_NEAR(one_good, (0.7 * 20 + 1) / 21, 1e-9);
  for (int i = 0; i < 1000; ++i) m.Observe("llama", kCode, true);
  EXPECT_DOUBLE_EQ(m.Blend(0.7, "llama", kCode).blended, 0.9) << "at most max_shift up";
  const double high = m.Blend(0.95, "llama", kCode).blended;
  EXPECT_GT(high, 0.99);
  EXPECT_LE(high, 1.0) << "never above 1";

  for (int i = 0; i < 5000; ++i) m.Observe("mistral", kCode, false);
  EXPECT_DOUBLE_EQ(m.Blend(0.6, "mistral", kCode).blended, 0.4) << "at most max_shift down";
  const double low = m.Blend(0.1, "mistral", kCode).blended;
  EXPECT_LT(low, 0.01);
  EXPECT_GE(low, 0.0) << "never below 0";

  // Other categories and models are untouched; weights count.
  EXPECT_DOUBLE_EQ(m.Blend(0.7, "llama", v1::TASK_CATEGORY_CREATIVE).blended, 0.7);
  OutcomeModel w;
  w.Observe("phi", kCode, false, 0.25);
  w.Observe("phi", kCode, false, 0);  // ignored
  EXPECT_DOUBLE_EQ(w.Counts().at({"phi", kCode}).bad, 0.25);
}

std::vector<v1::DeviceInfo> TwoDevices() {
  std::vector<v1::DeviceInfo> devices(2);
  const char* models[] = {"qwen2.5-coder-7b", "llama-3.1-8b"};
  const char* families[] = {"qwen-coder", "llama"};
  for (int i = 0; i < 2; ++i) {
    devices[i].set_device_id(absl::StrCat("dev-", i));
    devices[i].set_state(v1::DEVICE_STATE_HEALTHY);
    devices[i].mutable_load()->set_max_concurrency(4);
    auto* m = devices[i].add_models();
    m->set_name(models[i]);
    m->set_family(families[i]);
    m->set_parameters_b(7);
  }
  return devices;
}

TEST(OutcomeModelTest, TheSelectorFollowsWhatWasObservedAndSaysSo) {
  OutcomeModel outcomes({.prior_strength = 4, .max_shift = 0.4});
  ModelSelector selector(AffinityTable::Defaults(), {.outcomes = &outcomes});
  const auto devices = TwoDevices();
  auto before = selector.SelectForCategories(devices, {kCode}, {});
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->model.name(), "qwen2.5-coder-7b");  // 0.95 vs 0.70 by the table

  // qwen-coder keeps losing code competitions to llama.
  for (int i = 0; i < 30; ++i) {
    outcomes.Observe("qwen2.5-coder-7b", kCode, false);
    outcomes.Observe("llama-3.1-8b", kCode, true);
  }
  auto after = selector.SelectForCategories(devices, {kCode}, {});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->model.name(), "llama-3.1-8b");
  EXPECT_THAT(after->reason, HasSubstr("prior 0.70, 30 good, 0 bad"));
  EXPECT_THAT(after->reason, HasSubstr("prior 0.95, 0 good, 30 bad"));
  // Without outcomes the table alone decides, as before.
  ModelSelector plain;
  EXPECT_EQ(plain.SelectForCategories(devices, {kCode}, {})->model.name(), "qwen2.5-coder-7b");
}

TEST(OutcomeModelTest, OutcomesAreKeptInTheLedgerAndReadBackAfterARestart) {
  auto ledger = SqliteLedger::Open({.path = ":memory:"});
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  {
    OutcomeModel outcomes({}, ledger->get());
    ASSERT_TRUE(outcomes.Load().ok());
    outcomes.Observe("llama", kCode, true);
    outcomes.ObserveAll({{"llama", kCode, 0.5, 0}, {"phi", kCode, 0, 0.25},
                         {"", kCode, 1, 0} /* no model: dropped */, {"phi", kCode, -1, 0}});
    EXPECT_DOUBLE_EQ(outcomes.Counts().at({"llama", kCode}).good, 1.5);
  }
  // A new coordinator on the same ledger starts from what was learnt.
  OutcomeModel restarted({}, ledger->get());
  EXPECT_TRUE(restarted.Counts().empty());
  ASSERT_TRUE(restarted.Load().ok());
  const auto counts = restarted.Counts();
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_DOUBLE_EQ(counts.at({"llama", kCode}).good, 1.5);
  EXPECT_DOUBLE_EQ(counts.at({"phi", kCode}).bad, 0.25);
  EXPECT_DOUBLE_EQ(counts.at({"phi", kCode}).good, 0);
  // Apply counts what the ledger holds already, without writing it again.
  restarted.Apply({{"phi", kCode, 1, 0}});
  OutcomeModel third({}, ledger->get());
  ASSERT_TRUE(third.Load().ok());
  EXPECT_DOUBLE_EQ(third.Counts().at({"phi", kCode}).good, 0);
}

// A ledger whose outcome writes fail (a full disk, a lost database connection).
class FailingOutcomeStore : public LedgerStore {
 public:
  absl::Status Reserve(const std::string&, const std::string&, int64_t, absl::Duration) override {
    return absl::OkStatus();
  }
  absl::Status Release(const std::string&) override { return absl::OkStatus(); }
  absl::StatusOr<Settlement> Settle(const SettlementRequest&) override { return Settlement{}; }
  absl::StatusOr<std::vector<v1::ContributionRecord>> ListRecords(const RecordFilter&) override {
    return std::vector<v1::ContributionRecord>{};
  }
  absl::StatusOr<std::string> Authenticate(const std::string&) override { return std::string(); }
  absl::Status AddOutcomes(const std::vector<OutcomeDelta>& deltas) override {
    ++writes;
    return absl::UnavailableError("disk full");
  }
  absl::StatusOr<std::vector<OutcomeDelta>> Outcomes() override {
    return absl::UnavailableError("database gone");
  }
  int writes = 0;
};

TEST(OutcomeModelTest, AStoreThatFailsCostsPersistenceNotLearning) {
  FailingOutcomeStore store;
  OutcomeModel outcomes({}, &store);
  EXPECT_TRUE(absl::IsUnavailable(outcomes.Load())) << "a failed read is reported";
  outcomes.Observe("llama", kCode, true);
  EXPECT_EQ(store.writes, 1) << "the write was attempted";
  EXPECT_DOUBLE_EQ(outcomes.Counts().at({"llama", kCode}).good, 1) << "and the count still moved";
  EXPECT_GT(outcomes.Blend(0.7, "llama", kCode).blended, 0.7);
}

TEST(OutcomeModelTest, ThompsonDrawsStayWithinBoundsAndCentreOnTheBlend) {
  OutcomeModel m({.prior_strength = 20, .max_shift = 0.2});
  for (int i = 0; i < 10; ++i) m.Observe("llama", kCode, true);
  std::mt19937_64 rng(7);
  double sum = 0;
  std::set<double> distinct;
  constexpr int kDraws = 2000;
  for (int i = 0; i < kDraws; ++i) {
    const double x = m.Sample(0.6, "llama", kCode, rng);
    EXPECT_GE(x, 0.4);
    EXPECT_LE(x, 0.8);
    sum += x;
    distinct.insert(x);
  }
  EXPECT_GT(distinct.size(), 100u) << "draws, not one value";
  // Beta(22, 8) has mean 0.733; clamping at 0.8 pulls the draws' mean a little lower.
  EXPECT_NEAR(sum / kDraws, 0.72, 0.03);
  // Degenerate priors still give draws within [0, 1].
  EXPECT_GE(m.Sample(0.0, "x", kCode, rng), 0.0);
  EXPECT_LE(m.Sample(1.0, "x", kCode, rng), 1.0);
}

TEST(OutcomeModelTest, ExplorationSometimesTriesTheRunnerUpAndNeverWhenPinnedOrOff) {
  OutcomeModel outcomes({.prior_strength = 4, .max_shift = 0.4});
  ModelSelector exploring(AffinityTable::Defaults(),
                          {.outcomes = &outcomes, .explore = true, .explore_seed = 11});
  ModelSelector plain(AffinityTable::Defaults(), {.outcomes = &outcomes});
  const auto devices = TwoDevices();
  std::map<std::string, int> chosen;
  constexpr int kTries = 400;
  for (int i = 0; i < kTries; ++i) {
    auto s = exploring.SelectForCategories(devices, {kCode}, {});
    ASSERT_TRUE(s.ok());
    ++chosen[s->model.name()];
    if (s->model.name() == "llama-3.1-8b") {
      EXPECT_THAT(s->reason, HasSubstr("explored"));
    }
    EXPECT_EQ(plain.SelectForCategories(devices, {kCode}, {})->model.name(), "qwen2.5-coder-7b");
    auto pinned = exploring.SelectPassthrough(devices, {"qwen2.5-coder-7b", ""}, {});
    ASSERT_TRUE(pinned.ok());
    EXPECT_EQ(pinned->model.name(), "qwen2.5-coder-7b");
  }
  // 0.95 vs 0.70 at prior strength 4: the runner-up is tried, the favourite still wins most.
  EXPECT_GT(chosen["llama-3.1-8b"], 0);
  EXPECT_GT(chosen["qwen2.5-coder-7b"], kTries / 2);
}

class OutcomeFeedTest : public MeshFixture {};

TEST_F(OutcomeFeedTest, AMissedDeadlineCountsWeaklyAgainstTheModelAndACrashDoesNot) {
  AddDevice("slow", "llama-3.1-8b", "llama");
  OutcomeModel outcomes;
  AttemptRunner runner({.max_attempts = 1, .attempt_timeout = absl::Milliseconds(50),
                        .outcomes = &outcomes},
                       &registry_, &selector_, &devices_, &clock_);
  CallSpec spec;
  spec.sub_task_id = "t";
  spec.categories = {kCode};
  spec.messages.push_back(User("write a sort"));
  devices_.Set("slow:1", {.chunks = {}, .hang = true});
  auto late = runner.Run("req", spec, absl::Now() + absl::Seconds(30), &cancel_, Collect(), &log_);
  ASSERT_FALSE(late.ok());
  EXPECT_THAT(late.status().message(), HasSubstr("DEADLINE_EXCEEDED")) << late.status();
  ASSERT_EQ(outcomes.Counts().count({"llama-3.1-8b", kCode}), 1u);
  EXPECT_DOUBLE_EQ(outcomes.Counts().at({"llama-3.1-8b", kCode}).bad, 0.25);

  devices_.Set("slow:1", {.chunks = {}, .status = absl::UnavailableError("worker gone")});
  auto crashed = runner.Run("req2", spec, absl::Now() + absl::Seconds(30), &cancel_, Collect(), &log_);
  ASSERT_FALSE(crashed.ok());
  EXPECT_DOUBLE_EQ(outcomes.Counts().at({"llama-3.1-8b", kCode}).bad, 0.25) << "unchanged";
}

}  // namespace
}  // namespace loom
