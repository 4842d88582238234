#include "ledger/sqlite_ledger.h"

#include <sqlite3.h>

#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/ledger_records.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kCredit = kMicroPerCredit;


class SqliteLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen({}); }
  void Reopen(LedgerOptions options) {
    ledger_.reset();
    options.path = ":memory:";
    options.clock = &clock_;
    auto ledger = SqliteLedger::Open(options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    ASSERT_TRUE(ledger_->Grant(ClientAccount("alice"), 10 * kCredit, "setup").ok());
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
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), 10 * kCredit - 1000);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), 700);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p2")), 300);
  EXPECT_EQ(*ledger_->Balance("mint"), -10 * kCredit);
  ASSERT_EQ(ledger_->ListRecords({.request_id = "r1"})->size(), 2u);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST_F(SqliteLedgerTest, FeeGoesToTheFeeAccountAndNothingIsCreatedOrDestroyed) {
  Reopen({.fee_bps = 250});  // 2.5%
  auto s = ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 1000)}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->fee_micro, 25);
  EXPECT_EQ(s->charged_micro, 1025);
  EXPECT_EQ(*ledger_->Balance("fee"), 25);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), 1000);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

// Property: for any records and any fee, client debit = provider credits + fee, exactly, and
// all balances together sum to zero.
TEST(SqliteLedgerPropertyTest, RoundingNeverCreatesOrDestroysAMicroCredit) {
  std::mt19937_64 rng(20261123);
  for (int round = 0; round < 40; ++round) {
    const int fee_bps = std::uniform_int_distribution<int>(0, 10000)(rng);
    auto ledger = *SqliteLedger::Open({.path = ":memory:", .fee_bps = fee_bps});
    ASSERT_TRUE(ledger->Grant(ClientAccount("c"), 1'000'000 * kCredit, "g").ok());
    for (int request = 0; request < 5; ++request) {
      const std::string id = "r" + std::to_string(request);
      std::vector<v1::ContributionRecord> records;
      const int n = std::uniform_int_distribution<int>(1, 6)(rng);
      int64_t credited = 0;
      for (int i = 0; i < n; ++i) {
        // Credits as the coordinator computes them: tokens x price / 1000, rounded down.
        const int64_t tokens = std::uniform_int_distribution<int64_t>(0, 5000)(rng);
        const int64_t price = std::uniform_int_distribution<int64_t>(1, 99'999)(rng);
        records.push_back(Record(id, "p" + std::to_string(i % 3), CreditsForTokens(tokens, price),
                                 1, "t" + std::to_string(i)));
        credited += records.back().credits_micro();
      }
      const int64_t before = *ledger->Balance(ClientAccount("c"));
      auto s = ledger->Settle({id, ClientAccount("c"), records});
      ASSERT_TRUE(s.ok()) << s.status();
      EXPECT_EQ(before - *ledger->Balance(ClientAccount("c")), credited + s->fee_micro);
      EXPECT_EQ(s->fee_micro, credited * fee_bps / 10000);
    }
    int64_t total = 0;
    // Held by name: ranging over *ledger->Accounts() would read a destroyed temporary (ASan).
    absl::StatusOr<std::vector<AccountInfo>> accounts = ledger->Accounts();
    ASSERT_TRUE(accounts.ok()) << accounts.status();
    for (const auto& a : *accounts) total += a.balance_micro;
    EXPECT_EQ(total, 0);
    EXPECT_TRUE(ledger->Verify()->ok);
  }
}

TEST_F(SqliteLedgerTest, SettlingTwiceWritesOnce) {
  SettlementRequest request{"r1", ClientAccount("alice"), {Record("r1", "p1", 500)}};
  auto first = ledger_->Settle(request);
  auto second = ledger_->Settle(request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(second->already_settled);
  EXPECT_EQ(second->settlement_id, first->settlement_id);
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), 10 * kCredit - 500);
  EXPECT_EQ(ledger_->ListRecords({})->size(), 1u);
}

TEST_F(SqliteLedgerTest, SettlingAgainWithDifferentRecordsIsRefused) {
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 500)}}).ok());
  // Same total, different provider: still a different settlement.
  auto conflict = ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p2", 500)}});
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(conflict.status().message(), HasSubstr("already settled with different records"));
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p2")), 0);
}

TEST_F(SqliteLedgerTest, InvalidSettlementsChangeNothing) {
  EXPECT_EQ(ledger_->Settle({"", ClientAccount("alice"), {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", -5)}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->Settle({"r1", ProviderAccount("p1"), {Record("r1", "p1", 5)}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto dup = ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 5), Record("r1", "p2", 5)}});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kFailedPrecondition);  // same (request, task, attempt)
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), 10 * kCredit);
  EXPECT_TRUE(ledger_->ListRecords({})->empty());
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST_F(SqliteLedgerTest, SettlementNeverOverdraws) {
  auto s = ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 11 * kCredit)}});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(), HasSubstr("insufficient credits"));
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), 10 * kCredit);
}

// The ledger remembers which accounts exist; a write that created accounts and then failed
// (rolled back to its savepoint) must not leave them remembered, or later writes would skip
// creating them and fail on the foreign keys.
TEST_F(SqliteLedgerTest, AccountsCreatedByAFailedWriteAreCreatedAgainLater) {
  auto refused = ledger_->Settle({"r1", ClientAccount("newcomer"), {Record("r1", "p9", 500)}});
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(ledger_->Grant(ClientAccount("newcomer"), kCredit, "first").ok());
  auto s = ledger_->Settle({"r1", ClientAccount("newcomer"), {Record("r1", "p9", 500)}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*ledger_->Balance(ClientAccount("newcomer")), kCredit - 500);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p9")), 500);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

// A settlement paying many providers writes its entries, balances and records in single
// statements; every one of them must land.
TEST_F(SqliteLedgerTest, SettlementPayingManyProvidersMovesEveryBalance) {
  std::vector<v1::ContributionRecord> records;
  for (int i = 0; i < 40; ++i) {
    records.push_back(Record("wide", "p" + std::to_string(i % 20), 10 + i, i + 1));
  }
  auto s = ledger_->Settle({"wide", ClientAccount("alice"), records});
  ASSERT_TRUE(s.ok()) << s.status();
  int64_t total = 0;
  for (int p = 0; p < 20; ++p) {
    const int64_t earned = (10 + p) + (10 + p + 20);
    EXPECT_EQ(*ledger_->Balance(ProviderAccount("p" + std::to_string(p))), earned);
    total += earned;
  }
  EXPECT_EQ(s->charged_micro, total);
  EXPECT_EQ(ledger_->ListRecords({.request_id = "wide"})->size(), 40u);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST_F(SqliteLedgerTest, ReservationsHoldCreditsUntilSettledOrReleased) {
  ASSERT_TRUE(ledger_->Reserve("r1", ClientAccount("alice"), 6 * kCredit, absl::Minutes(5)).ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 4 * kCredit);
  // A second request that would overdraw is refused up front.
  auto refused = ledger_->Reserve("r2", ClientAccount("alice"), 5 * kCredit, absl::Minutes(5));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("insufficient credits"));
  // The id is claimed while its reservation lives: a duplicate must not run beside it.
  EXPECT_EQ(ledger_->Reserve("r1", ClientAccount("alice"), 6 * kCredit, absl::Minutes(5)).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 4 * kCredit);
  // Settling charges the actual cost and drops the hold atomically.
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 2 * kCredit)}}).ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 8 * kCredit);
  EXPECT_EQ(ledger_->Reserve("r1", ClientAccount("alice"), 1, absl::Minutes(5)).code(),
            absl::StatusCode::kAlreadyExists);
  // Release drops a hold without charging.
  ASSERT_TRUE(ledger_->Reserve("r3", ClientAccount("alice"), 7 * kCredit, absl::Minutes(5)).ok());
  ASSERT_TRUE(ledger_->Release("r3").ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 8 * kCredit);
}

TEST_F(SqliteLedgerTest, ReservationsExpireSoACrashNeverHoldsCreditsForever) {
  ASSERT_TRUE(ledger_->Reserve("r1", ClientAccount("alice"), 9 * kCredit, absl::Minutes(5)).ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 1 * kCredit);
  clock_.Advance(absl::Minutes(5) + absl::Seconds(1));
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 10 * kCredit);
  EXPECT_TRUE(ledger_->Reserve("r2", ClientAccount("alice"), 9 * kCredit, absl::Minutes(5)).ok());
}

TEST_F(SqliteLedgerTest, AnExpiredReservationIsNotAHoldAndCanBeMadeAgain) {
  // Expired rows are swept at most once a second; until then they must count for nothing.
  ASSERT_TRUE(ledger_->Reserve("r1", ClientAccount("alice"), 6 * kCredit, absl::Seconds(10)).ok());
  clock_.Advance(absl::Seconds(11));
  // Swept now (more than a second since the last sweep); "r0" is only here to trigger it.
  ASSERT_TRUE(ledger_->Reserve("r0", ClientAccount("alice"), 1, absl::Seconds(1)).ok());
  clock_.Advance(absl::Milliseconds(1500));  // r0 expired; the next sweep is due
  ASSERT_TRUE(ledger_->Reserve("r2", ClientAccount("alice"), 2 * kCredit, absl::Seconds(30)).ok());
  clock_.Advance(absl::Milliseconds(100));  // within a second of that sweep: no sweeps now
  ASSERT_TRUE(
      ledger_->Reserve("r3", ClientAccount("alice"), 2 * kCredit, absl::Milliseconds(200)).ok());
  clock_.Advance(absl::Milliseconds(300));  // r3 expired, not swept
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 8 * kCredit) << "only r2 holds";
  // The same request reserves again over its unswept expired row, and holds again.
  ASSERT_TRUE(ledger_->Reserve("r3", ClientAccount("alice"), 3 * kCredit, absl::Seconds(30)).ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 5 * kCredit);
  auto accounts = ledger_->Accounts();
  ASSERT_TRUE(accounts.ok());
  for (const auto& a : *accounts) {
    if (a.id == ClientAccount("alice")) {
      EXPECT_EQ(a.reserved_micro, 5 * kCredit);
    }
  }
}

TEST_F(SqliteLedgerTest, GrantsAndPayoutsAreIdempotentByReference) {
  auto g1 = ledger_->Grant(ClientAccount("bob"), 3 * kCredit, "inv-1");
  auto g2 = ledger_->Grant(ClientAccount("bob"), 3 * kCredit, "inv-1");
  ASSERT_TRUE(g1.ok() && g2.ok());
  EXPECT_EQ(*g1, *g2);
  EXPECT_EQ(*ledger_->Balance(ClientAccount("bob")), 3 * kCredit);
  EXPECT_EQ(ledger_->Grant(ClientAccount("bob"), 4 * kCredit, "inv-1").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ledger_->Grant("bob", 1, "x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger_->Grant(ClientAccount("bob"), 0, "y").status().code(),
            absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 2 * kCredit)}}).ok());
  EXPECT_EQ(ledger_->Payout("p1", 3 * kCredit, "wire-1").status().code(),
            absl::StatusCode::kFailedPrecondition) << "beyond the provider's balance";
  auto p1 = ledger_->Payout("p1", kCredit, "wire-1");
  auto p2 = ledger_->Payout("p1", kCredit, "wire-1");
  ASSERT_TRUE(p1.ok() && p2.ok()) << p1.status();
  EXPECT_EQ(*p1, *p2);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), kCredit);
  EXPECT_EQ(*ledger_->Balance("payout"), kCredit);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST_F(SqliteLedgerTest, PayoutsReportEarningsTokensRequestsDevicesAndUnpaid) {
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 700)}}).ok());
  clock_.Advance(absl::Hours(1));
  auto rec = Record("r2", "p1", 300);
  rec.set_device_id("other-device");
  ASSERT_TRUE(ledger_->Settle({"r2", ClientAccount("alice"), {rec, Record("r2", "p2", 100, 1, "t2")}}).ok());
  ASSERT_TRUE(ledger_->Payout("p1", 200, "w").ok());
  auto rows = ledger_->Payouts({});
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  const PayoutRow& p1 = (*rows)[0];
  EXPECT_EQ(p1.provider_id, "p1");
  EXPECT_EQ(p1.earned_micro, 1000);
  EXPECT_EQ(p1.tokens, 20);
  EXPECT_EQ(p1.requests, 2);
  EXPECT_EQ(p1.devices, 2);
  EXPECT_EQ(p1.paid_out_micro, 200);
  EXPECT_EQ(p1.unpaid_micro, 800);
  // A period that holds only the second hour.
  auto later = ledger_->Payouts({.since_ms = absl::ToUnixMillis(clock_.Now()), .provider_id = "p1"});
  ASSERT_EQ(later->size(), 1u);
  EXPECT_EQ((*later)[0].earned_micro, 300);
  EXPECT_EQ((*later)[0].requests, 1);
}

TEST_F(SqliteLedgerTest, ManyThreadsRacingOnOneAccountNeverOverdrawIt) {
  // 10 credits; 64 requests each reserving 1 credit and settling 0.4: some must be refused,
  // and the account never goes below zero.
  std::atomic<int> settled{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        const std::string id = "race-" + std::to_string(t) + "-" + std::to_string(i);
        absl::Status reserved = ledger_->Reserve(id, ClientAccount("alice"), kCredit, absl::Minutes(5));
        if (!reserved.ok()) {
          ++refused;
          continue;
        }
        auto s = ledger_->Settle({id, ClientAccount("alice"), {Record(id, "p1", 4 * kCredit / 10)}});
        if (s.ok()) ++settled; else ++refused;
      }
    });
  }
  for (auto& t : threads) t.join();
  const int64_t balance = *ledger_->Balance(ClientAccount("alice"));
  EXPECT_GE(balance, 0);
  EXPECT_EQ(balance, 10 * kCredit - settled * (4 * kCredit / 10));
  EXPECT_EQ(settled + refused, 64);
  EXPECT_GE(settled, 10) << "reservations of settled requests are released, so more than 10 fit";
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST_F(SqliteLedgerTest, CallersLeadingSmallGroupCommitsCommitEveryWriteExactlyOnce) {
  // Batches of at most 3 while 16 callers write: most callers queue behind a leader, the lead
  // passes on with writes still queued, and some batches mix failing and succeeding writes.
  Reopen({.max_batch = 3, .group_commit_wait = absl::Microseconds(50)});
  std::atomic<int> granted{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        // Every fifth write reuses a reference with another amount: refused, nothing written.
        const std::string reference =
            i % 5 == 4 ? absl::StrCat("g-", t, "-", i - 1) : absl::StrCat("g-", t, "-", i);
        auto id = ledger_->Grant(ClientAccount(absl::StrCat("c", t % 4)), 1000 + i, reference);
        if (id.ok()) ++granted; else ++refused;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted, 16 * 16);
  EXPECT_EQ(refused, 16 * 4);
  int64_t total = 0;
  for (int c = 0; c < 4; ++c) total += *ledger_->Balance(ClientAccount(absl::StrCat("c", c)));
  int64_t expected = 0;
  for (int i = 0; i < 20; ++i) expected += i % 5 == 4 ? 0 : 16 * (1000 + i);
  EXPECT_EQ(total, expected);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

std::string TempDb(const std::string& name) {
  std::string path = ::testing::TempDir() + "/" + name;
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  return path;
}

void Sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_close(db);
}

// The first column of the first row, as text ("" when there is none).
std::string SqlValue(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return "open failed";
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0)) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

TEST(SqliteLedgerFileTest, RecordsVerdictsAndOutcomesSurviveReopeningAndStayOffTheChain) {
  const std::string path = TempDb("ledger_feedback.db");
  {
    auto ledger = *SqliteLedger::Open({.path = path});
    ASSERT_TRUE(ledger->Grant(ClientAccount("a"), 5 * kCredit, "g").ok());
    v1::ContributionRecord answer = Record("r1", "p1", 100);
    answer.set_category(v1::TASK_CATEGORY_TRANSLATION);
    answer.set_in_answer(true);
    ASSERT_TRUE(ledger->Settle({"r1", ClientAccount("a"), {answer}}).ok());
    auto applied = ledger->RecordFeedback({"r1", ClientAccount("a"), /*good=*/true, ""});
    ASSERT_TRUE(applied.ok()) << applied.status();
    ASSERT_EQ(applied->size(), 1u);
    EXPECT_EQ((*applied)[0].category, v1::TASK_CATEGORY_TRANSLATION);
    EXPECT_DOUBLE_EQ((*applied)[0].good, 1);
    ASSERT_TRUE(ledger->AddOutcomes({{"m", v1::TASK_CATEGORY_TRANSLATION, 0, 0.5}}).ok());
    EXPECT_TRUE(absl::IsInvalidArgument(
        ledger->AddOutcomes({{"m", v1::TASK_CATEGORY_TRANSLATION, -1, 0}})));
    EXPECT_TRUE(absl::IsInvalidArgument(
        ledger->RecordFeedback({"r1", "provider:p1", true, ""}).status()));
  }
  auto ledger = *SqliteLedger::Open({.path = path});
  auto records = ledger->ListRecords({.request_id = "r1"});
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 1u);
  EXPECT_EQ((*records)[0].category(), v1::TASK_CATEGORY_TRANSLATION);
  EXPECT_TRUE((*records)[0].in_answer());
  auto outcomes = ledger->Outcomes();
  ASSERT_TRUE(outcomes.ok());
  ASSERT_EQ(outcomes->size(), 1u);
  EXPECT_DOUBLE_EQ((*outcomes)[0].good, 1);
  EXPECT_DOUBLE_EQ((*outcomes)[0].bad, 0.5);
  EXPECT_TRUE(absl::IsAlreadyExists(
      ledger->RecordFeedback({"r1", ClientAccount("a"), false, ""}).status()));
  // Routing statistics are not money: editing them leaves the chain intact.
  ledger.reset();
  Sql(path, "UPDATE outcomes SET good = 99");
  EXPECT_TRUE((*SqliteLedger::Open({.path = path, .read_only = true}))->Verify()->ok);
}

TEST(SqliteLedgerFileTest, VerifyNamesTheFirstEditedTransaction) {
  const std::string path = TempDb("ledger_tamper.db");
  {
    auto ledger = *SqliteLedger::Open({.path = path});
    ASSERT_TRUE(ledger->Grant(ClientAccount("a"), 5 * kCredit, "g").ok());
    for (int i = 0; i < 3; ++i) {
      const std::string id = "r" + std::to_string(i);
      ASSERT_TRUE(ledger->Settle({id, ClientAccount("a"), {Record(id, "p1", 100)}}).ok());
    }
    EXPECT_TRUE(ledger->Verify()->ok);
  }
  // Someone pays themselves more for the second settlement (transaction 3).
  Sql(path, "UPDATE entries SET amount_micro = 900 WHERE txn_id = 3 AND account_id = 'provider:p1'");
  auto ledger = *SqliteLedger::Open({.path = path, .read_only = true});
  VerifyReport report = *ledger->Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_transaction, 3);
  EXPECT_THAT(report.problem, HasSubstr("sum"));
}

TEST(SqliteLedgerFileTest, VerifyCatchesABalancedEditAndADeletedTransaction) {
  const std::string path = TempDb("ledger_tamper2.db");
  {
    auto ledger = *SqliteLedger::Open({.path = path});
    ASSERT_TRUE(ledger->Grant(ClientAccount("a"), 5 * kCredit, "g").ok());
    ASSERT_TRUE(ledger->Settle({"r1", ClientAccount("a"), {Record("r1", "p1", 100)}}).ok());
    ASSERT_TRUE(ledger->Settle({"r2", ClientAccount("a"), {Record("r2", "p1", 100)}}).ok());
  }
  // Moving the grant to another client keeps every sum at zero; only the hash notices.
  Sql(path, "INSERT INTO accounts VALUES('client:mallory', 'client', 0); "
            "UPDATE entries SET account_id = 'client:mallory' WHERE txn_id = 1 AND account_id = 'client:a'");
  {
    auto ledger = *SqliteLedger::Open({.path = path, .read_only = true});
    VerifyReport report = *ledger->Verify();
    EXPECT_FALSE(report.ok);
    EXPECT_EQ(report.first_bad_transaction, 1);
    EXPECT_THAT(report.problem, HasSubstr("hash"));
  }
  Sql(path, "UPDATE entries SET account_id = 'client:a' WHERE txn_id = 1 AND account_id = 'client:mallory'; "
            "PRAGMA foreign_keys=OFF; DELETE FROM contributions WHERE txn_id = 2; "
            "DELETE FROM entries WHERE txn_id = 2; DELETE FROM transactions WHERE id = 2;");
  auto ledger = *SqliteLedger::Open({.path = path, .read_only = true});
  VerifyReport report = *ledger->Verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_transaction, 3);
  EXPECT_THAT(report.problem, HasSubstr("previous-hash link"));
}

TEST(SqliteLedgerFileTest, MigratesAVersionOneLedgerAndHashesItsHistory) {
  const std::string path = TempDb("ledger_v1.db");
  // A ledger as version 1 wrote it: no hashes, no reservations, no system accounts.
  Sql(path, R"sql(
CREATE TABLE accounts(id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('client', 'provider', 'mint', 'payout', 'fee')), created_at_ms INTEGER NOT NULL);
CREATE TABLE transactions(id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, reference TEXT NOT NULL UNIQUE, amount_micro INTEGER NOT NULL, created_at_ms INTEGER NOT NULL);
CREATE TABLE entries(txn_id INTEGER NOT NULL REFERENCES transactions(id), account_id TEXT NOT NULL REFERENCES accounts(id), amount_micro INTEGER NOT NULL, PRIMARY KEY (txn_id, account_id));
CREATE INDEX entries_by_account ON entries(account_id);
CREATE TABLE contributions(request_id TEXT NOT NULL, sub_task_id TEXT NOT NULL, attempt INTEGER NOT NULL, txn_id INTEGER NOT NULL REFERENCES transactions(id), device_id TEXT NOT NULL, provider_id TEXT NOT NULL, model TEXT NOT NULL, role INTEGER NOT NULL, token_count INTEGER NOT NULL, weight REAL NOT NULL, credits_micro INTEGER NOT NULL, created_at_ms INTEGER NOT NULL, PRIMARY KEY (request_id, sub_task_id, attempt));
CREATE INDEX contributions_by_provider ON contributions(provider_id, created_at_ms);
INSERT INTO accounts VALUES ('client:anonymous', 'client', 1), ('provider:bob', 'provider', 1);
INSERT INTO transactions VALUES (1, 'settle', 'settle:old-1', 448, 5);
INSERT INTO entries VALUES (1, 'client:anonymous', -448), (1, 'provider:bob', 448);
INSERT INTO contributions VALUES ('old-1', 't', 1, 1, 'd', 'bob', 'llama', 1, 64, 1.0, 448, 5);
PRAGMA user_version = 1;
)sql");
  auto ledger = SqliteLedger::Open({.path = path});
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  EXPECT_EQ(*(*ledger)->SchemaVersion(), SqliteLedger::kSchemaVersion);
  EXPECT_TRUE((*ledger)->Verify()->ok) << (*ledger)->Verify()->problem;
  EXPECT_EQ(*(*ledger)->Balance(ProviderAccount("bob")), 448);
  // The old settlement is still exactly-once.
  auto again = (*ledger)->Settle({"old-1", ClientAccount("anonymous"), {[] {
                                    auto r = Record("old-1", "bob", 448, 1, "t");
                                    r.set_device_id("d");
                                    r.set_model("llama");
                                    r.set_token_count(64);
                                    return r;
                                  }()}});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_settled);
  // New transactions chain on with the length-prefixed form; old and new verify together.
  ASSERT_TRUE((*ledger)->Grant(ClientAccount("anonymous"), 1000, "after-upgrade").ok());
  EXPECT_TRUE((*ledger)->Verify()->ok) << (*ledger)->Verify()->problem;
  EXPECT_EQ(SqlValue(path, "SELECT group_concat(chain_version) FROM (SELECT chain_version FROM "
                           "transactions ORDER BY id)"),
            "1,2");
}

TEST_F(SqliteLedgerTest, AnyBytesInReferencesAndIdsKeepTheChainVerifiable) {
  // NUL, separators of the old hashed form, non-ASCII: the chain holds for all of them (the
  // coordinator refuses such request ids anyway; the ledger must not depend on it).
  static constexpr char kOdd[] = "a\0b|c=d\xff";
  const std::string odd(kOdd, sizeof(kOdd) - 1);  // 8 bytes, the NUL inside included
  ASSERT_TRUE(ledger_->Grant(ClientAccount("alice"), 5, odd).ok());
  ASSERT_TRUE(ledger_->Grant(ClientAccount("alice"), 5, "a").ok()) << "a prefix is another reference";
  ASSERT_TRUE(ledger_->Settle({odd, ClientAccount("alice"), {Record(odd, "p1", kCredit)}}).ok());
  VerifyReport report = *ledger_->Verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(ledger_->ListRecords({.request_id = odd})->size(), 1u);
  EXPECT_TRUE(ledger_->ListRecords({.request_id = "a"})->empty());
}

TEST_F(SqliteLedgerTest, ASettlementKeepsItsAnswerForRepliesWithinTheRetention) {
  ASSERT_TRUE(ledger_->Reserve("r1", ClientAccount("alice"), kCredit, absl::Minutes(5)).ok());
  ASSERT_TRUE(ledger_->Settle({.request_id = "r1", .client_account = ClientAccount("alice"),
                               .records = {Record("r1", "p1", kCredit / 2)},
                               .answer = std::string("the answer\0bytes", 16)}).ok());
  auto kept = ledger_->Answer("r1");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->answer, std::string("the answer\0bytes", 16));
  EXPECT_EQ(kept->account, ClientAccount("alice"));
  EXPECT_EQ(kept->charged_micro, kCredit / 2);
  EXPECT_EQ(ledger_->Answer("r2").status().code(), absl::StatusCode::kNotFound);
  // Past retention (24 h by default) it is gone, and deleted as later settlements go by.
  clock_.Advance(absl::Hours(25));
  EXPECT_EQ(ledger_->Answer("r1").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(ledger_->Settle({"r3", ClientAccount("alice"), {Record("r3", "p1", 1)}}).ok());
  EXPECT_EQ(ledger_->Reserve("r1", ClientAccount("alice"), 1, absl::Minutes(5)).code(),
            absl::StatusCode::kAlreadyExists) << "the id stays spent";
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST(SqliteLedgerFileTest, RefusesANewerSchemaAndBadOptions) {
  const std::string path = TempDb("ledger_newer.db");
  ASSERT_TRUE(SqliteLedger::Open({.path = path}).ok());
  Sql(path, "PRAGMA user_version=99");
  auto newer = SqliteLedger::Open({.path = path});
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(newer.status().message(), HasSubstr("newer"));
  EXPECT_FALSE(SqliteLedger::Open({.path = "/nonexistent/dir/loom.db", .read_only = true}).ok());
  EXPECT_EQ(SqliteLedger::Open({.path = ":memory:", .synchronous = "SOMETIMES"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteLedger::Open({.path = ":memory:", .fee_bps = 20000}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// The report: after a coordinator crash a client's credits stayed reserved for 6 minutes.
// Reservations name their holder; a restarted holder releases its own, and only its own.
TEST(SqliteLedgerOrphanTest, ARestartedHolderReleasesItsOwnReservationsOnly) {
  const std::string path = TempDb("ledger_orphans.db");
  {
    auto a = *SqliteLedger::Open({.path = path, .holder = "coordinator-a"});
    ASSERT_TRUE(a->Grant(ClientAccount("alice"), 10 * kMicroPerCredit, "setup").ok());
    ASSERT_TRUE(a->Reserve("r-a", ClientAccount("alice"), 3 * kMicroPerCredit, absl::Hours(1)).ok());
  }  // coordinator-a "crashes" with its hold in place
  {
    auto b = *SqliteLedger::Open({.path = path, .holder = "coordinator-b"});
    ASSERT_TRUE(b->Reserve("r-b", ClientAccount("alice"), 2 * kMicroPerCredit, absl::Hours(1)).ok());
  }
  auto restarted = *SqliteLedger::Open({.path = path, .holder = "coordinator-a"});
  EXPECT_EQ(*restarted->Available(ClientAccount("alice")), 5 * kMicroPerCredit);
  EXPECT_EQ(*restarted->ReleaseOrphans(), 1);
  EXPECT_EQ(*restarted->Available(ClientAccount("alice")), 8 * kMicroPerCredit)
      << "coordinator-b's hold is not coordinator-a's to release";
  EXPECT_EQ(*restarted->ReleaseOrphans(), 0);
  EXPECT_TRUE(restarted->Verify()->ok);
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// The report: ten maximum-size grants overflowed int64 (verify then exited 1, not 3).
TEST(SqliteLedgerBoundsTest, NoGrantTakesABalancePastTheBoundAndTheBooksStayExact) {
  auto ledger = *SqliteLedger::Open({.path = ":memory:"});
  int refused = 0;
  for (int i = 0; i < 10; ++i) {
    auto granted = ledger->Grant(ClientAccount("whale"), INT64_MAX, absl::StrCat("g", i));
    if (!granted.ok()) {
      ++refused;
      EXPECT_EQ(granted.status().code(), absl::StatusCode::kOutOfRange);
      EXPECT_THAT(granted.status().message(), HasSubstr("the most the ledger holds"));
    }
  }
  EXPECT_EQ(refused, 10) << "INT64_MAX is past the bound at once";
  for (int i = 0; i < 10; ++i) {
    (void)ledger->Grant(ClientAccount("whale"), SqliteLedger::kMaxBalanceMicro / 3, absl::StrCat("h", i));
  }
  const int64_t balance = *ledger->Balance(ClientAccount("whale"));
  EXPECT_LE(balance, SqliteLedger::kMaxBalanceMicro);
  EXPECT_EQ(balance % (SqliteLedger::kMaxBalanceMicro / 3), 0) << "whole grants only";
  VerifyReport report = *ledger->Verify();
  EXPECT_TRUE(report.ok) << report.problem;
}

}  // namespace
}  // namespace loom

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

namespace loom {
namespace {

// A real full disk: a small tmpfs (needs root, as CI and setup run; skipped otherwise) filled
// to the last byte while a reservation is held.
class SqliteLedgerFullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/loom_full_disk_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    if (mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      rmdir(dir_.c_str());
      dir_.clear();
      GTEST_SKIP() << "cannot mount a tmpfs here (" << strerror(errno) << ")";
    }
  }
  void TearDown() override {
    if (dir_.empty()) return;
    umount(dir_.c_str());
    rmdir(dir_.c_str());
  }
  // Writes a file until the file system is full; returns its path.
  std::string Fill() {
    const std::string path = dir_ + "/filler";
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    const std::string block(4096, 'x');
    for (size_t size : {block.size(), size_t{1}}) {
      for (int i = 0; i < 100000 && write(fd, block.data(), size) == static_cast<ssize_t>(size); ++i) {
      }
    }
    close(fd);
    return path;
  }
  std::string dir_;
};

// The report: a full disk left a reservation behind, so the client's credits stayed held
// until it expired. A release that fails is written with the ledger's next write.
TEST_F(SqliteLedgerFullDiskTest, AReleaseThatFailsOnAFullDiskIsWrittenOnceThereIsRoom) {
  auto ledger = *SqliteLedger::Open({.path = dir_ + "/loom.db"});
  ASSERT_TRUE(ledger->Grant(ClientAccount("alice"), 10 * kMicroPerCredit, "setup").ok());
  ASSERT_TRUE(ledger->Reserve("r1", ClientAccount("alice"), 4 * kMicroPerCredit, absl::Hours(1)).ok());
  const std::string filler = Fill();

  auto settled = ledger->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 700)}});
  EXPECT_FALSE(settled.ok()) << "the disk is full";
  EXPECT_FALSE(ledger->Release("r1").ok()) << "the disk is full";
  EXPECT_EQ(*ledger->Available(ClientAccount("alice")), 6 * kMicroPerCredit) << "still held";

  ASSERT_EQ(unlink(filler.c_str()), 0);
  // Any next write carries the release; here another client's grant.
  ASSERT_TRUE(ledger->Grant(ClientAccount("bob"), kMicroPerCredit, "bob-1").ok());
  EXPECT_EQ(*ledger->Available(ClientAccount("alice")), 10 * kMicroPerCredit);
  EXPECT_EQ(*ledger->Balance(ClientAccount("alice")), 10 * kMicroPerCredit) << "nothing charged";
  // The retried release does not run again: a new reservation of the same id stays.
  ASSERT_TRUE(ledger->Reserve("r1", ClientAccount("alice"), 2 * kMicroPerCredit, absl::Hours(1)).ok());
  ASSERT_TRUE(ledger->Grant(ClientAccount("bob"), kMicroPerCredit, "bob-2").ok());
  EXPECT_EQ(*ledger->Available(ClientAccount("alice")), 8 * kMicroPerCredit);
  EXPECT_TRUE(ledger->Verify()->ok);
}

}  // namespace
}  // namespace loom
