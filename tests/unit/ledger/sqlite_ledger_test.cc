#include "ledger/sqlite_ledger.h"

#include <sqlite3.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

v1::ContributionRecord Record(const std::string& request, const std::string& provider,
                              int64_t credits, int attempt = 1) {
  v1::ContributionRecord r;
  r.set_request_id(request);
  r.set_sub_task_id("t1");
  r.set_attempt(attempt);
  r.set_device_id("dev-" + provider);
  r.set_provider_id(provider);
  r.set_model("m");
  r.set_role(v1::CONTRIBUTION_ROLE_EXECUTE);
  r.set_token_count(10);
  r.set_weight(1.0);
  r.set_credits_micro(credits);
  return r;
}

class SqliteLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ledger = SqliteLedger::Open({.path = ":memory:", .clock = &clock_});
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
  }
  SimulatedClock clock_;
  std::unique_ptr<SqliteLedger> ledger_;
};

TEST_F(SqliteLedgerTest, MigratesToTheCurrentSchema) {
  EXPECT_EQ(*ledger_->SchemaVersion(), SqliteLedger::kSchemaVersion);
}

TEST_F(SqliteLedgerTest, SettlementMovesCreditsFromClientToProviders) {
  auto s = ledger_->Settle({"r1", ClientAccount("alice"),
                            {Record("r1", "p1", 700), Record("r1", "p2", 300, 2)}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->charged_micro, 1000);
  EXPECT_FALSE(s->already_settled);
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), -1000);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), 700);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p2")), 300);
  auto records = ledger_->ListRecords({.request_id = "r1"});
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].created_unix_ms(), absl::ToUnixMillis(clock_.Now()));
}

TEST_F(SqliteLedgerTest, SettlingTwiceWritesOnce) {
  SettlementRequest request{"r1", ClientAccount("alice"), {Record("r1", "p1", 500)}};
  auto first = ledger_->Settle(request);
  auto second = ledger_->Settle(request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(second->already_settled);
  EXPECT_EQ(second->settlement_id, first->settlement_id);
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), -500);
  EXPECT_EQ(ledger_->ListRecords({})->size(), 1u);
}

TEST_F(SqliteLedgerTest, SettlingAgainWithDifferentRecordsIsRefused) {
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("a"), {Record("r1", "p1", 500)}}).ok());
  auto conflict = ledger_->Settle({"r1", ClientAccount("a"), {Record("r1", "p1", 900)}});
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(conflict.status().message(), HasSubstr("already settled"));
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), 500);
}

TEST_F(SqliteLedgerTest, InvalidSettlementsChangeNothing) {
  EXPECT_EQ(ledger_->Settle({"", ClientAccount("a"), {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->Settle({"r1", ClientAccount("a"), {Record("r1", "p1", -5)}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto no_provider = Record("r1", "p1", 5);
  no_provider.clear_provider_id();
  EXPECT_EQ(ledger_->Settle({"r1", ClientAccount("a"), {no_provider}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
}

TEST_F(SqliteLedgerTest, DuplicateRecordKeyRollsBackTheWholeSettlement) {
  auto s = ledger_->Settle({"r1", ClientAccount("a"), {Record("r1", "p1", 5), Record("r1", "p2", 5)}});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);  // same (request, task, attempt)
  EXPECT_EQ(*ledger_->Balance(ClientAccount("a")), 0);
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
}

TEST(SqliteLedgerFileTest, ReopensAFileAndRefusesANewerSchema) {
  const std::string path = ::testing::TempDir() + "/ledger_reopen.db";
  std::remove(path.c_str());
  {
    auto ledger = SqliteLedger::Open({.path = path});
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ASSERT_TRUE((*ledger)->Settle({"r1", ClientAccount("a"), {Record("r1", "p1", 42)}}).ok());
  }
  {
    auto ledger = SqliteLedger::Open({.path = path, .read_only = true});
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    EXPECT_EQ(*(*ledger)->Balance(ProviderAccount("p1")), 42);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = SqliteLedger::Open({.path = path});
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(newer.status().message(), HasSubstr("newer"));
}

TEST(SqliteLedgerFileTest, ReadOnlyOpenOfAMissingFileFails) {
  auto ledger = SqliteLedger::Open({.path = "/nonexistent/dir/loom.db", .read_only = true});
  EXPECT_FALSE(ledger.ok());
}

TEST(SqliteLedgerFileTest, BadSynchronousSettingIsRefused) {
  auto ledger = SqliteLedger::Open({.path = ":memory:", .synchronous = "SOMETIMES"});
  EXPECT_EQ(ledger.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loom
