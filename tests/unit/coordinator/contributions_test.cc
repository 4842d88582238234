// ContributionRecords: what each model call earns, its weight, and a losing candidate's share.
#include "coordinator/pipeline/contributions.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

using ::testing::DoubleEq;
using ::testing::HasSubstr;

Selection On(const std::string& device, const std::string& provider, int64_t price) {
  Selection s;
  s.device_id = device;
  s.provider_id = provider;
  s.model.set_name("m-" + device);
  s.model.set_price_per_1k_micro(price);
  return s;
}

TEST(ContributionsTest, ACallIsOneRecordAtItsModelsPrice) {
  CallResult call;
  call.chosen = On("dev-a", "alice", 7000);
  call.tokens = 64;
  call.attempt = 1;
  std::vector<v1::ContributionRecord> records;
  const absl::Time now = absl::FromUnixMillis(1'700'000'000'000);
  AddRecords(&records, "req-1", "t1", v1::CONTRIBUTION_ROLE_EXECUTE, call, now,
             {v1::TASK_CATEGORY_CODE, /*in_answer=*/true});
  ASSERT_EQ(records.size(), 1u);
  const v1::ContributionRecord& r = records[0];
  EXPECT_EQ(r.request_id(), "req-1");
  EXPECT_EQ(r.sub_task_id(), "t1");
  EXPECT_EQ(r.device_id(), "dev-a");
  EXPECT_EQ(r.provider_id(), "alice");
  EXPECT_EQ(r.model(), "m-dev-a");
  EXPECT_EQ(r.token_count(), 64);
  EXPECT_EQ(r.credits_micro(), 448);  // 64 tokens at 7,000 per 1k, rounded down
  EXPECT_EQ(r.attempt(), 1);
  EXPECT_EQ(r.category(), v1::TASK_CATEGORY_CODE);
  EXPECT_TRUE(r.in_answer());
  EXPECT_EQ(r.created_unix_ms(), 1'700'000'000'000);
}

TEST(ContributionsTest, StreamedPartsOfFailedAttemptsArePaidAtTheirOwnDevicesPrice) {
  CallResult call;
  call.earlier.push_back({On("dev-a", "alice", 1000), /*attempt=*/1, /*tokens=*/10});
  call.earlier.push_back({On("dev-b", "bob", 3000), /*attempt=*/2, /*tokens=*/5});
  call.chosen = On("dev-c", "carol", 2000);
  call.tokens = 20;
  call.attempt = 3;
  std::vector<v1::ContributionRecord> records;
  AddRecords(&records, "req-1", "t1", v1::CONTRIBUTION_ROLE_EXECUTE, call, absl::UnixEpoch(),
             {v1::TASK_CATEGORY_CREATIVE, /*in_answer=*/true});
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].provider_id(), "alice");
  EXPECT_EQ(records[0].attempt(), 1);
  EXPECT_EQ(records[0].credits_micro(), 10);
  EXPECT_EQ(records[1].provider_id(), "bob");
  EXPECT_EQ(records[1].credits_micro(), 15);
  EXPECT_EQ(records[2].provider_id(), "carol");
  EXPECT_EQ(records[2].credits_micro(), 40);
  // Only the finished attempt's text is the answer; the parts keep the category.
  EXPECT_FALSE(records[0].in_answer());
  EXPECT_FALSE(records[1].in_answer());
  EXPECT_TRUE(records[2].in_answer());
  EXPECT_EQ(records[1].category(), v1::TASK_CATEGORY_CREATIVE);
}

TEST(ContributionsTest, WeightsAreTokenSharesThatSumToOne) {
  std::vector<v1::ContributionRecord> records(3);
  records[0].set_token_count(10);
  records[1].set_token_count(30);
  records[2].set_token_count(60);
  EXPECT_EQ(SetWeights(&records), 100);
  EXPECT_THAT(records[0].weight(), DoubleEq(0.1));
  EXPECT_THAT(records[1].weight(), DoubleEq(0.3));
  EXPECT_THAT(records[2].weight(), DoubleEq(0.6));
}

TEST(ContributionsTest, WithNoTokensEveryRecordWeighsTheSame) {
  std::vector<v1::ContributionRecord> records(4);
  EXPECT_EQ(SetWeights(&records), 0);
  for (const auto& r : records) EXPECT_THAT(r.weight(), DoubleEq(0.25));
  std::vector<v1::ContributionRecord> none;
  EXPECT_EQ(SetWeights(&none), 0);
}

TEST(ContributionsTest, ALosingCandidatesShareRoundsDownAndStaysWithinItsCredits) {
  EXPECT_EQ(ParticipantCredits(1000, 0.25), 250);
  EXPECT_EQ(ParticipantCredits(999, 0.25), 249);  // 249.75
  EXPECT_EQ(ParticipantCredits(1000, 1.0), 1000);
  EXPECT_EQ(ParticipantCredits(1000, 1.5), 1000);  // never more than its tokens' price
  EXPECT_EQ(ParticipantCredits(1000, 0.0), 0);
  EXPECT_EQ(ParticipantCredits(1000, -0.5), 0);  // never negative
  EXPECT_EQ(ParticipantCredits(0, 0.5), 0);
  for (int64_t credits = 0; credits < 200; ++credits) {
    for (double share : {0.1, 0.33, 0.5, 0.99}) {
      const int64_t paid = ParticipantCredits(credits, share);
      EXPECT_GE(paid, 0);
      EXPECT_LE(paid, credits);
    }
  }
}

TEST(ContributionsTest, ThePayoutRuleSaysTheClampedShare) {
  EXPECT_THAT(PayoutRule(0.25), HasSubstr("25%"));
  EXPECT_THAT(PayoutRule(2.0), HasSubstr("100%"));
  EXPECT_THAT(PayoutRule(-1.0), HasSubstr(" 0%"));
}

}  // namespace
}  // namespace loom
