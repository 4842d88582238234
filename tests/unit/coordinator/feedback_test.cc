#include "coordinator/pipeline/feedback.h"

#include "common/ids.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/pricing.h"
#include "ledger/sqlite_ledger.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
constexpr auto kCode = v1::TASK_CATEGORY_CODE;
constexpr auto kCreative = v1::TASK_CATEGORY_CREATIVE;

v1::ContributionRecord Part(const std::string& request, const std::string& sub_task,
                            const std::string& model, v1::ContributionRole role,
                            v1::TaskCategory category, bool in_answer, int attempt = 1) {
  v1::ContributionRecord r;
  r.set_request_id(request);
  r.set_sub_task_id(sub_task);
  r.set_attempt(attempt);
  r.set_device_id("dev-" + model);
  r.set_provider_id("bob");
  r.set_model(model);
  r.set_role(role);
  r.set_token_count(10);
  r.set_weight(0.5);
  r.set_credits_micro(100);
  r.set_category(category);
  r.set_in_answer(in_answer);
  return r;
}

v1::FeedbackRequest Verdict(const std::string& id, v1::FeedbackRating rating,
                            const std::string& sub_task = "") {
  v1::FeedbackRequest r;
  r.set_request_id(id);
  r.set_rating(rating);
  r.set_sub_task_id(sub_task);
  return r;
}

class FeedbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ledger = SqliteLedger::Open({.path = ":memory:"});
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    for (const char* client : {"alice", "carol"}) {
      ASSERT_TRUE(ledger_->Grant(ClientAccount(client), 10 * kMicroPerCredit, client).ok());
    }
    // A compiled request of alice's (her own id "job-1"): two parts, the first retried on
    // another model, planning and synthesis around them.
    const std::string compiled = ScopedRequestId(ClientAccount("alice"), "job-1");
    ASSERT_TRUE(ledger_
                    ->Settle({compiled, ClientAccount("alice"),
                              {Part(compiled, "decompose", "phi", v1::CONTRIBUTION_ROLE_DECOMPOSE,
                                    v1::TASK_CATEGORY_UNSPECIFIED, false),
                               Part(compiled, "a", "gemma", v1::CONTRIBUTION_ROLE_EXECUTE, kCode,
                                    false, 1),
                               Part(compiled, "a", "qwen", v1::CONTRIBUTION_ROLE_EXECUTE, kCode,
                                    true, 2),
                               Part(compiled, "b", "llama", v1::CONTRIBUTION_ROLE_EXECUTE,
                                    kCreative, true),
                               Part(compiled, "synthesis", "llama",
                                    v1::CONTRIBUTION_ROLE_SYNTHESIZE,
                                    v1::TASK_CATEGORY_UNSPECIFIED, false)}})
                    .ok());
    // A compete request with an assigned id: the winner reached the answer, the loser did not.
    ASSERT_TRUE(ledger_
                    ->Settle({"uuid-2", ClientAccount("alice"),
                              {Part("uuid-2", "compete-1", "qwen", v1::CONTRIBUTION_ROLE_COMPETE,
                                    kCode, false),
                               Part("uuid-2", "compete-2", "llama", v1::CONTRIBUTION_ROLE_COMPETE,
                                    kCode, true)}})
                    .ok());
  }
  std::unique_ptr<SqliteLedger> ledger_;
  OutcomeModel outcomes_{{}, nullptr};
};

TEST_F(FeedbackTest, AVerdictOnTheWholeAnswerIsSharedByItsParts) {
  auto r = ApplyFeedback(ledger_.get(), &outcomes_, "alice",
                         Verdict("job-1", v1::FEEDBACK_RATING_BAD));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id(), "job-1");
  ASSERT_EQ(r->applied_size(), 2);  // the finished attempts only; planning and synthesis not
  EXPECT_EQ(r->applied(0).model(), "qwen");
  EXPECT_EQ(r->applied(0).category(), kCode);
  EXPECT_DOUBLE_EQ(r->applied(0).bad(), 0.5);
  EXPECT_EQ(r->applied(1).model(), "llama");
  EXPECT_EQ(r->applied(1).category(), kCreative);
  EXPECT_DOUBLE_EQ(r->applied(1).bad(), 0.5);
  EXPECT_DOUBLE_EQ(outcomes_.Counts().at({"qwen", kCode}).bad, 0.5);
  EXPECT_EQ(outcomes_.Counts().count({"gemma", kCode}), 0u) << "the failed attempt's model";
  // Kept in the ledger with the verdict.
  auto kept = ledger_->Outcomes();
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 2u);
}

TEST_F(FeedbackTest, OneVerdictPerRequestAndClientASecondChangesNothing) {
  ASSERT_TRUE(ApplyFeedback(ledger_.get(), &outcomes_, "alice",
                            Verdict("uuid-2", v1::FEEDBACK_RATING_GOOD))
                  .ok());
  EXPECT_DOUBLE_EQ(outcomes_.Counts().at({"llama", kCode}).good, 1) << "the compete winner";
  EXPECT_EQ(outcomes_.Counts().count({"qwen", kCode}), 0u) << "the loser's answer was not given";
  for (auto rating : {v1::FEEDBACK_RATING_GOOD, v1::FEEDBACK_RATING_BAD}) {
    auto again = ApplyFeedback(ledger_.get(), &outcomes_, "alice", Verdict("uuid-2", rating));
    EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
    EXPECT_THAT(again.status().message(), HasSubstr("already rated good"));
  }
  EXPECT_DOUBLE_EQ(outcomes_.Counts().at({"llama", kCode}).good, 1);
  EXPECT_DOUBLE_EQ(outcomes_.Counts().at({"llama", kCode}).bad, 0);
  auto kept = ledger_->Outcomes();
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 1u);
  EXPECT_DOUBLE_EQ((*kept)[0].good, 1);
}

TEST_F(FeedbackTest, AnotherClientsRequestIsNotFoundAndNothingChanges) {
  for (const char* id : {"job-1", "uuid-2", "never-sent"}) {
    auto r = ApplyFeedback(ledger_.get(), &outcomes_, "carol", Verdict(id, v1::FEEDBACK_RATING_BAD));
    EXPECT_TRUE(absl::IsNotFound(r.status())) << id << ": " << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("no settled request ", id,
                                                             " of client carol")));
  }
  EXPECT_TRUE(outcomes_.Counts().empty());
  EXPECT_TRUE(ledger_->Outcomes()->empty());
  // Alice may still rate her own.
  EXPECT_TRUE(ApplyFeedback(ledger_.get(), &outcomes_, "alice",
                            Verdict("uuid-2", v1::FEEDBACK_RATING_BAD))
                  .ok());
}

TEST_F(FeedbackTest, ASubTaskNamedTakesTheWholeVerdictAndAnUnknownOneIsRefused) {
  auto wrong = ApplyFeedback(ledger_.get(), &outcomes_, "alice",
                             Verdict("job-1", v1::FEEDBACK_RATING_GOOD, "synthesis"));
  EXPECT_TRUE(absl::IsInvalidArgument(wrong.status())) << wrong.status();
  EXPECT_THAT(wrong.status().message(), HasSubstr("no sub-task synthesis in its answer"));
  auto r = ApplyFeedback(ledger_.get(), &outcomes_, "alice",
                         Verdict("job-1", v1::FEEDBACK_RATING_GOOD, "b"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->applied_size(), 1);
  EXPECT_EQ(r->applied(0).model(), "llama");
  EXPECT_DOUBLE_EQ(r->applied(0).good(), 1);
}

TEST_F(FeedbackTest, BadInputIsRefusedBeforeTheLedger) {
  EXPECT_TRUE(absl::IsInvalidArgument(
      ApplyFeedback(ledger_.get(), &outcomes_, "alice", Verdict("", v1::FEEDBACK_RATING_GOOD))
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ApplyFeedback(ledger_.get(), &outcomes_, "alice",
                    Verdict("job-1", v1::FEEDBACK_RATING_UNSPECIFIED))
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ApplyFeedback(ledger_.get(), &outcomes_, "alice",
                    Verdict(std::string(300, 'x'), v1::FEEDBACK_RATING_GOOD))
          .status()));
}

TEST_F(FeedbackTest, TheReportListsEveryCategoryOfServedAndObservedModels) {
  std::vector<v1::DeviceInfo> devices(1);
  auto* m = devices[0].add_models();
  m->set_name("qwen2.5-coder-7b");
  m->set_family("qwen-coder");
  OutcomeModel outcomes;
  outcomes.Observe("qwen2.5-coder-7b", kCode, false, 5);
  outcomes.Observe("retired-model", kCreative, true, 2);
  ModelSelector selector(AffinityTable::Defaults(), {.outcomes = &outcomes});
  const v1::ListAffinitiesResponse report = AffinityReport(selector, devices, &outcomes);
  ASSERT_EQ(report.affinities_size(), 16);  // 2 models x 8 categories
  const v1::Affinity* code = nullptr;
  const v1::Affinity* retired = nullptr;
  for (const auto& a : report.affinities()) {
    if (a.model() == "qwen2.5-coder-7b" && a.category() == kCode) code = &a;
    if (a.model() == "retired-model" && a.category() == kCreative) retired = &a;
  }
  ASSERT_NE(code, nullptr);
  EXPECT_EQ(code->family(), "qwen-coder");
  EXPECT_DOUBLE_EQ(code->prior(), 0.95);
  EXPECT_DOUBLE_EQ(code->bad(), 5);
  EXPECT_LT(code->blended(), code->prior());
  ASSERT_NE(retired, nullptr);
  EXPECT_EQ(retired->family(), "");
  EXPECT_DOUBLE_EQ(retired->good(), 2);
  EXPECT_GT(retired->blended(), retired->prior());
  EXPECT_EQ(report.affinities(0).model(), "qwen2.5-coder-7b") << "sorted by model";
}

}  // namespace
}  // namespace loom
