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

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST(LedgerCliParseTest, CreditsParseExactlyWithoutFloatingPoint) {
  EXPECT_EQ(*ParseCredits("12"), 12 * kMicroPerCredit);
  EXPECT_EQ(*ParseCredits("0.5"), 500'000);
  EXPECT_EQ(*ParseCredits("3.000001"), 3'000'001);
  EXPECT_EQ(*ParseCredits(".25"), 250'000);
  EXPECT_EQ(*ParseCredits("0.1"), 100'000);  // exact, where a double would not be
  for (const char* bad : {"", "0", "-1", "1.0000001", "abc", "1e3", "1.2.3", " 1", "0.000000",
                          "9999999999999"}) {
    EXPECT_FALSE(ParseCredits(bad).ok()) << bad;
  }
}

TEST(LedgerCliParseTest, TimesAcceptDatesRfc3339AndUnixSeconds) {
  EXPECT_EQ(*ParseTimeMs("1700000000"), 1'700'000'000'000);
  EXPECT_EQ(*ParseTimeMs("2023-11-14"), 1'699'920'000'000);
  EXPECT_EQ(*ParseTimeMs("2023-11-14T22:13:20Z"), 1'700'000'000'000);
  // Found by fuzzing: Unix seconds that overflowed when turned into milliseconds.
  EXPECT_EQ(ParseTimeMs("9999999999999999").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseTimeMs("-62167219200"), -62'167'219'200'000);
  EXPECT_FALSE(ParseTimeMs("last tuesday").ok());
}

TEST(LedgerCliFormatTest, AccountsPayoutsAndBalanceInEveryFormat) {
  std::vector<AccountInfo> accounts = {{"client:alice", "client", 2'500'000, 500'000}};
  EXPECT_THAT(FormatAccounts(accounts, OutputFormat::kTable), HasSubstr("2.500000"));
  EXPECT_THAT(FormatAccounts(accounts, OutputFormat::kTable), HasSubstr("2.000000"));  // available
  EXPECT_THAT(FormatAccounts(accounts, OutputFormat::kCsv), HasSubstr(",2500000,500000\n"));
  EXPECT_THAT(FormatAccounts(accounts, OutputFormat::kJson), HasSubstr("\"availableMicro\":\"2000000\""));

  std::vector<PayoutRow> payouts = {{"bob", 448, 64, 1, 1, 100, 348}};
  EXPECT_THAT(FormatPayouts(payouts, OutputFormat::kTable), HasSubstr("0.000448"));
  EXPECT_THAT(FormatPayouts(payouts, OutputFormat::kCsv), HasSubstr("bob,0.000448,64,1,1,0.000100,0.000348,448,100,348\n"));
  EXPECT_THAT(FormatPayouts(payouts, OutputFormat::kJson), HasSubstr("\"earnedMicro\":\"448\""));
  EXPECT_THAT(FormatPayouts({}, OutputFormat::kTable), HasSubstr("no provider"));

  EXPECT_THAT(FormatBalance("provider:bob", 448, 448, OutputFormat::kJson), HasSubstr("\"balanceMicro\":\"448\""));
  EXPECT_THAT(FormatBalance("provider:bob", 448, 448, OutputFormat::kCsv), HasSubstr("provider:bob,0.000448,0.000448,448,448"));
}

TEST(LedgerCliHelpTest, EveryCommandHasHelp) {
  for (const char* c : {"payouts", "balance", "accounts", "records", "grant", "payout", "verify"}) {
    EXPECT_THAT(CommandHelp(c), HasSubstr(c)) << c;
  }
  EXPECT_EQ(CommandHelp("frobnicate"), "");
}

}  // namespace
}  // namespace loom
