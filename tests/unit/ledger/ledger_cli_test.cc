#include "ledger/ledger_cli.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

std::vector<v1::ContributionRecord> OneRecord() {
  v1::ContributionRecord r;
  r.set_request_id("req-1");
  r.set_sub_task_id("t1");
  r.set_attempt(2);
  r.set_device_id("dev-a");
  r.set_provider_id("alice");
  r.set_model("llama-3.1-8b");
  r.set_role(v1::CONTRIBUTION_ROLE_EXECUTE);
  r.set_token_count(64);
  r.set_weight(1);
  r.set_credits_micro(1234567);
  return {r};
}

TEST(LedgerCliTest, ParsesFormats) {
  EXPECT_EQ(*ParseOutputFormat("table"), OutputFormat::kTable);
  EXPECT_EQ(*ParseOutputFormat("json"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("csv"), OutputFormat::kCsv);
  EXPECT_EQ(ParseOutputFormat("xml").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LedgerCliTest, TableShowsCredits) {
  std::string table = FormatRecords(OneRecord(), OutputFormat::kTable);
  EXPECT_THAT(table, HasSubstr("dev-a"));
  EXPECT_THAT(table, HasSubstr("execute"));
  EXPECT_THAT(table, HasSubstr("1.234567"));
}

TEST(LedgerCliTest, CsvCarriesMicroCredits) {
  std::string csv = FormatRecords(OneRecord(), OutputFormat::kCsv);
  EXPECT_THAT(csv, HasSubstr("credits_micro\n"));
  EXPECT_THAT(csv, HasSubstr(",1.234567,1234567\n"));
}

TEST(LedgerCliTest, JsonIsTheProtoMapping) {
  std::string json = FormatRecords(OneRecord(), OutputFormat::kJson);
  EXPECT_THAT(json, HasSubstr("\"creditsMicro\":\"1234567\""));
  EXPECT_THAT(json, HasSubstr("\"role\":\"CONTRIBUTION_ROLE_EXECUTE\""));
  EXPECT_EQ(FormatRecords({}, OutputFormat::kJson), "[]\n");
}

TEST(PricingTest, DefaultPriceFollowsSizeWithAFloor) {
  v1::ModelInfo m;
  m.set_parameters_b(7);
  EXPECT_EQ(PricePer1kMicro(m), 7000);
  m.set_parameters_b(0.1);
  EXPECT_EQ(PricePer1kMicro(m), 500);
  m.set_price_per_1k_micro(42);
  EXPECT_EQ(PricePer1kMicro(m), 42);
}

TEST(PricingTest, CreditsRoundDownAndFormat) {
  EXPECT_EQ(CreditsForTokens(64, 7000), 448);
  EXPECT_EQ(CreditsForTokens(1, 999), 0);
  EXPECT_EQ(CreditsForTokens(-1, 999), 0);
  EXPECT_EQ(FormatCredits(1234567), "1.234567");
  EXPECT_EQ(FormatCredits(-5), "-0.000005");
}

}  // namespace
}  // namespace loom
