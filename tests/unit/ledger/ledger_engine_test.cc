// The ledger's guarantees, checked on every engine by the same tests: SQLite (a file) and
// PostgreSQL (a real server started for the suite: tests/integration/postgres_server.h).
#include <sqlite3.h>

#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/ledger_records.h"
#include "ledger/ledger_admin.h"
#include "ledger/postgres_ledger.h"
#include "ledger/pricing.h"
#include "ledger/sqlite_ledger.h"
#include "tests/integration/postgres_server.h"
#include "tests/integration/process_harness.h"

namespace loom {
namespace {

using ::testing::HasSubstr;
constexpr int64_t kCredit = kMicroPerCredit;


// One server for the whole program (started on first use, stopped when the tests end), a
// database per test.
std::unique_ptr<testing::PostgresServer>& Server() {
  static auto* server = new std::unique_ptr<testing::PostgresServer>;
  return *server;
}

testing::PostgresServer* Postgres() {
  if (!Server()) {
    Server() = std::make_unique<testing::PostgresServer>();
    if (!Server()->Start()) ADD_FAILURE() << "PostgreSQL did not start: " << Server()->error();
  }
  return Server().get();
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { Server().reset(); }
};
[[maybe_unused]] ::testing::Environment* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

class LedgerEngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = absl::StrCat("t", counter_++);
    if (GetParam() == "sqlite") {
      dir_ = testing::MakeTempDir();
      path_ = dir_ + "/ledger.db";
    } else {
      ASSERT_FALSE(Postgres()->port() == 0) << "no PostgreSQL server";
      conninfo_ = Postgres()->CreateDatabase(name_);
      ASSERT_FALSE(conninfo_.empty()) << Postgres()->error() << " in " << info->name();
    }
    ledger_ = Open("coordinator-a", 0);
    ASSERT_NE(ledger_, nullptr);
    absl::StatusOr<std::string> granted = ledger_->Grant(ClientAccount("alice"), 10 * kCredit, "setup");
    ASSERT_TRUE(granted.ok()) << granted.status();
  }
  void TearDown() override {
    ledger_.reset();
    if (!dir_.empty()) testing::RunCommand("/bin/rm", {"-rf", dir_});
  }

  // Another handle on the same books: another coordinator when `holder` differs.
  std::unique_ptr<LedgerAdmin> Open(const std::string& holder, int fee_bps) {
    if (GetParam() == "sqlite") {
      auto l = SqliteLedger::Open({.path = path_, .fee_bps = fee_bps, .holder = holder});
      EXPECT_TRUE(l.ok()) << l.status();
      return l.ok() ? std::unique_ptr<LedgerAdmin>(std::move(*l)) : nullptr;
    }
    auto l = PostgresLedger::Open({.conninfo = conninfo_, .connections = 4, .fee_bps = fee_bps,
                                   .holder = holder});
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? std::unique_ptr<LedgerAdmin>(std::move(*l)) : nullptr;
  }

  // Runs SQL behind the ledger's back (tampering).
  void Tamper(const std::string& sql) {
    if (GetParam() == "sqlite") {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
      char* err = nullptr;
      EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
      sqlite3_close(db);
    } else {
      EXPECT_FALSE(Postgres()->Sql(name_, sql).empty()) << Postgres()->error();
    }
  }

  // Every account's balance (system accounts included) sums to zero.
  int64_t SumOfBalances(LedgerAdmin* ledger) {
    auto accounts = ledger->Accounts();
    EXPECT_TRUE(accounts.ok()) << accounts.status();
    int64_t sum = 0;
    for (const auto& a : accounts.value_or(std::vector<AccountInfo>{})) sum += a.balance_micro;
    return sum;
  }

  static inline int counter_ = 0;
  std::string name_, dir_, path_, conninfo_;
  std::unique_ptr<LedgerAdmin> ledger_;
};

TEST_P(LedgerEngineTest, SettlementIsDoubleEntryAndPaysEachProviderItsRecords) {
  auto fee_ledger = Open("coordinator-a", 250);  // 2.5%
  auto s = fee_ledger->Settle({"r1", ClientAccount("alice"),
                               {Record("r1", "p1", 700'000), Record("r1", "p2", 300'000, 1, "t2")}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->charged_micro, 1'025'000);
  EXPECT_EQ(s->fee_micro, 25'000);
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), 10 * kCredit - 1'025'000);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), 700'000);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p2")), 300'000);
  EXPECT_EQ(*ledger_->Balance("fee"), 25'000);
  EXPECT_EQ(SumOfBalances(ledger_.get()), 0);
  auto records = ledger_->ListRecords({.request_id = "r1"});
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].category(), v1::TASK_CATEGORY_CODE);
  EXPECT_TRUE((*records)[0].in_answer());
  auto report = ledger_->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
}

TEST_P(LedgerEngineTest, ASettlementIsWrittenOnceAndDifferentRecordsAreRefused) {
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 500)}}).ok());
  auto again = ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 500)}});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_settled);
  auto different = ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 900)}});
  EXPECT_TRUE(absl::IsFailedPrecondition(different.status())) << different.status();
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), 500);
}

TEST_P(LedgerEngineTest, ReservationsHoldCreditsUntilSettledOrReleased) {
  ASSERT_TRUE(ledger_->Reserve("r1", ClientAccount("alice"), 6 * kCredit, absl::Minutes(5)).ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 4 * kCredit);
  auto over = ledger_->Reserve("r2", ClientAccount("alice"), 5 * kCredit, absl::Minutes(5));
  EXPECT_TRUE(IsInsufficientCredits(over)) << over;
  EXPECT_TRUE(absl::IsAborted(
      ledger_->Reserve("r1", ClientAccount("alice"), kCredit, absl::Minutes(5))))
      << "a running request's id is claimed";
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", kCredit)}}).ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 9 * kCredit) << "settling consumes it";
  EXPECT_TRUE(absl::IsAlreadyExists(
      ledger_->Reserve("r1", ClientAccount("alice"), kCredit, absl::Minutes(5))))
      << "a settled id never runs again";
  ASSERT_TRUE(ledger_->Reserve("r3", ClientAccount("alice"), kCredit, absl::Minutes(5)).ok());
  ASSERT_TRUE(ledger_->Release("r3").ok());
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 9 * kCredit);
}

TEST_P(LedgerEngineTest, ARestartedCoordinatorReleasesItsOwnReservationsOnly) {
  auto other = Open("coordinator-b", 0);
  ASSERT_TRUE(ledger_->Reserve("a1", ClientAccount("alice"), kCredit, absl::Minutes(5)).ok());
  ASSERT_TRUE(other->Reserve("b1", ClientAccount("alice"), 2 * kCredit, absl::Minutes(5)).ok());
  auto released = ledger_->ReleaseOrphans();
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(*released, 1);
  EXPECT_EQ(*ledger_->Available(ClientAccount("alice")), 8 * kCredit);
}

// Several coordinators (handles with different holders) race on one client: reservations and
// settlements never overdraw it, every request id settles once, and the books verify.
TEST_P(LedgerEngineTest, CoordinatorsRacingOnOneClientNeverOverdrawOrSettleTwice) {
  std::vector<std::unique_ptr<LedgerAdmin>> coordinators;
  for (int i = 0; i < 3; ++i) coordinators.push_back(Open(absl::StrCat("coordinator-", i), 0));
  constexpr int kThreads = 6, kRequests = 12;
  std::atomic<int> settled{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      LedgerAdmin* l = coordinators[t % coordinators.size()].get();
      for (int i = 0; i < kRequests; ++i) {
        // Each request id is sent by two threads on different coordinators.
        const std::string id = absl::StrCat("req-", (t / 2), "-", i);
        absl::Status held = l->Reserve(id, ClientAccount("alice"), 400'000, absl::Minutes(5));
        if (!held.ok()) {
          ++refused;
          continue;
        }
        auto s = l->Settle({id, ClientAccount("alice"), {Record(id, "p1", 300'000)}});
        if (s.ok() && !s->already_settled) ++settled;
      }
    });
  }
  for (auto& t : threads) t.join();
  const int64_t balance = *ledger_->Balance(ClientAccount("alice"));
  EXPECT_GE(balance, 0);
  EXPECT_EQ(balance, 10 * kCredit - settled * 300'000);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), settled * 300'000);
  EXPECT_LE(settled, kThreads / 2 * kRequests) << "an id sent twice settles once";
  EXPECT_GT(settled, 0);
  EXPECT_EQ(SumOfBalances(ledger_.get()), 0);
  auto report = ledger_->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->transactions, 1 + settled);
}

// Grants (mint -> client, mint -> provider) and settlements (client -> providers) racing on
// the same accounts from two coordinators: every one succeeds (no deadlock, no lost update),
// a payout after them takes exactly what was earned, and the books add up.
TEST_P(LedgerEngineTest, GrantsAndSettlementsRacingOnSharedAccountsAllGoThroughAndAddUp) {
  auto other = Open("coordinator-b", 0);
  constexpr int kEach = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      LedgerAdmin* l = t % 2 ? other.get() : ledger_.get();
      for (int i = 0; i < kEach; ++i) {
        const std::string id = absl::StrCat("t", t, "-", i);
        absl::Status s;
        if (t == 0) s = l->Grant(ClientAccount("alice"), 1000, id).status();
        if (t == 1) s = l->Settle({id, ClientAccount("alice"), {Record(id, "p1", 700)}}).status();
        if (t == 2) s = l->Settle({id, ClientAccount("alice"), {Record(id, "p2", 300)}}).status();
        if (t == 3) s = l->Grant(ProviderAccount("p1"), 50, id).status();
        if (!s.ok()) {
          ++failures;
          ADD_FAILURE() << id << ": " << s;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  ASSERT_TRUE(ledger_->Payout("p1", kEach * 700, "cash-out").ok());
  EXPECT_EQ(*ledger_->Balance(ClientAccount("alice")), 10 * kCredit + kEach * (1000 - 1000));
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), kEach * 50);
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p2")), kEach * 300);
  EXPECT_EQ(SumOfBalances(ledger_.get()), 0);
  EXPECT_TRUE(ledger_->Verify()->ok);
}

TEST_P(LedgerEngineTest, VerifyFindsAnEditedEntryAndADeletedTransaction) {
  for (int i = 0; i < 3; ++i) {
    const std::string id = absl::StrCat("r", i);
    ASSERT_TRUE(ledger_->Settle({id, ClientAccount("alice"), {Record(id, "p1", 100)}}).ok());
  }
  ASSERT_TRUE(ledger_->Verify()->ok);
  Tamper("UPDATE entries SET amount_micro = amount_micro + 50 WHERE account_id = 'provider:p1' "
         "AND txn_id = (SELECT MAX(txn_id) FROM entries)");
  auto edited = ledger_->Verify();
  ASSERT_TRUE(edited.ok());
  EXPECT_FALSE(edited->ok);
  EXPECT_FALSE(edited->problem.empty());
  Tamper("UPDATE entries SET amount_micro = amount_micro - 50 WHERE account_id = 'provider:p1' "
         "AND txn_id = (SELECT MAX(txn_id) FROM entries)");
  ASSERT_TRUE(ledger_->Verify()->ok) << "undone";
  // The middle settlement goes, with its entries and records.
  Tamper("DELETE FROM contributions WHERE request_id = 'r1'; DELETE FROM entries WHERE txn_id = "
         "(SELECT id FROM transactions WHERE reference = 'settle:r1'); DELETE FROM transactions "
         "WHERE reference = 'settle:r1'");
  auto deleted = ledger_->Verify();
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(deleted->ok) << "a deleted transaction breaks the chain (or the balances)";
}

TEST_P(LedgerEngineTest, VerifyFindsEditedRecordsAndABalanceOffItsEntries) {
  for (int i = 0; i < 2; ++i) {
    const std::string id = absl::StrCat("r", i);
    ASSERT_TRUE(ledger_->Settle({id, ClientAccount("alice"), {Record(id, "p1", 100)}}).ok());
  }
  ASSERT_TRUE(ledger_->Verify()->ok);
  // A record paid more than its settlement says: the records no longer match it.
  Tamper("UPDATE contributions SET credits_micro = credits_micro + 1 WHERE request_id = 'r1'");
  auto records = ledger_->Verify();
  ASSERT_TRUE(records.ok());
  EXPECT_FALSE(records->ok);
  EXPECT_THAT(records->problem, HasSubstr("records"));
  EXPECT_GT(records->first_bad_transaction, 0);
  Tamper("UPDATE contributions SET credits_micro = credits_micro - 1 WHERE request_id = 'r1'");
  ASSERT_TRUE(ledger_->Verify()->ok) << "undone";
  // A balance edited behind the entries' back (a client's: every engine keeps a row for it).
  Tamper("UPDATE balances SET balance_micro = balance_micro + 7 WHERE account_id = 'client:alice'");
  auto balance = ledger_->Verify();
  ASSERT_TRUE(balance.ok());
  EXPECT_FALSE(balance->ok);
  EXPECT_THAT(balance->problem, HasSubstr("balance of client:alice"));
}

TEST_P(LedgerEngineTest, GrantsAndPayoutsAreIdempotentAndBounded) {
  auto g1 = ledger_->Grant(ClientAccount("bob"), kCredit, "inv-1");
  auto g2 = ledger_->Grant(ClientAccount("bob"), kCredit, "inv-1");
  ASSERT_TRUE(g1.ok() && g2.ok());
  EXPECT_EQ(*g1, *g2);
  EXPECT_TRUE(absl::IsFailedPrecondition(ledger_->Grant(ClientAccount("bob"), 2 * kCredit, "inv-1").status()));
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 700)}}).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(ledger_->Payout("p1", 701, "po-1").status()));
  ASSERT_TRUE(ledger_->Payout("p1", 700, "po-2").ok());
  EXPECT_EQ(*ledger_->Balance(ProviderAccount("p1")), 0);
  auto payouts = ledger_->Payouts({});
  ASSERT_TRUE(payouts.ok());
  ASSERT_EQ(payouts->size(), 1u);
  EXPECT_EQ((*payouts)[0].earned_micro, 700);
  EXPECT_EQ((*payouts)[0].paid_out_micro, 700);
  EXPECT_TRUE(absl::IsOutOfRange(
      ledger_->Grant(ClientAccount("bob"), LedgerAdmin::kMaxBalanceMicro, "huge").status()));
  EXPECT_EQ(SumOfBalances(ledger_.get()), 0);
}

TEST_P(LedgerEngineTest, RecentTransactionsAreListedNewestFirst) {
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 5)}}).ok());
  ASSERT_TRUE(ledger_->Grant(ClientAccount("bob"), kCredit, "bob-1").ok());
  auto two = ledger_->RecentTransactions(2);
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[0].kind, "grant");
  EXPECT_EQ((*two)[0].amount_micro, kCredit);
  EXPECT_EQ((*two)[1].kind, "settle");
  EXPECT_EQ((*two)[1].reference, "settle:r1");
  EXPECT_GT((*two)[0].id, (*two)[1].id);
  EXPECT_GT((*two)[1].created_ms, 0);
  EXPECT_EQ(ledger_->RecentTransactions(1000)->size(), 3u) << "the setup grant too";
  EXPECT_TRUE(absl::IsInvalidArgument(ledger_->RecentTransactions(0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ledger_->RecentTransactions(1001).status()));
}

TEST_P(LedgerEngineTest, KeysAuthenticateUntilRevokedAndAnswersAreKeptForReplays) {
  auto key = ledger_->CreateKey("alice");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*ledger_->Authenticate(key->second), ClientAccount("alice"));
  ASSERT_TRUE(ledger_->RevokeKey(key->first.id).ok());
  EXPECT_TRUE(absl::IsUnauthenticated(ledger_->Authenticate(key->second).status()));
  EXPECT_TRUE(absl::IsNotFound(ledger_->RevokeKey(key->first.id)));
  const std::string answer("binary\0answer\xff", 14);
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 5)}, answer}).ok());
  auto kept = ledger_->Answer("r1");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->answer, answer);
  EXPECT_EQ(kept->account, ClientAccount("alice"));
}

TEST_P(LedgerEngineTest, FeedbackIsOncePerRequestAndOutcomesAddUp) {
  ASSERT_TRUE(ledger_->Settle({"r1", ClientAccount("alice"), {Record("r1", "p1", 5)}}).ok());
  EXPECT_TRUE(absl::IsNotFound(
      ledger_->RecordFeedback({"r1", ClientAccount("mallory"), true, ""}).status()));
  auto applied = ledger_->RecordFeedback({"r1", ClientAccount("alice"), true, ""});
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_EQ(applied->size(), 1u);
  EXPECT_TRUE(absl::IsAlreadyExists(
      ledger_->RecordFeedback({"r1", ClientAccount("alice"), false, ""}).status()));
  ASSERT_TRUE(ledger_->AddOutcomes({{"m", v1::TASK_CATEGORY_CODE, 0, 0.25}}).ok());
  auto totals = ledger_->Outcomes();
  ASSERT_TRUE(totals.ok());
  ASSERT_EQ(totals->size(), 1u);
  EXPECT_DOUBLE_EQ((*totals)[0].good, 1);
  EXPECT_DOUBLE_EQ((*totals)[0].bad, 0.25);
}

// PostgreSQL is another process: its backends get terminated and the server restarts (a
// failover, an upgrade, an operator). A pooled connection the server closed is noticed before
// it is used (no call fails for it); while the server is down calls fail as unavailable,
// naming PostgreSQL, and charge nothing; once it is back the same ledger serves again and the
// books are whole.
TEST(PostgresLedgerTest, ServesOnAfterItsBackendsAreTerminatedAndTheServerRestarts) {
  testing::PostgresServer* pg = Postgres();
  ASSERT_NE(pg->port(), 0) << "no PostgreSQL server";
  const std::string conninfo = pg->CreateDatabase("restarts");
  ASSERT_FALSE(conninfo.empty()) << pg->error();
  auto opened = PostgresLedger::Open({.conninfo = conninfo, .connections = 2});
  ASSERT_TRUE(opened.ok()) << opened.status();
  PostgresLedger& ledger = **opened;
  ASSERT_TRUE(ledger.Grant(ClientAccount("alice"), 10 * kCredit, "setup").ok());
  auto serve = [&](const std::string& id) -> absl::Status {
    absl::Status held = ledger.Reserve(id, ClientAccount("alice"), kCredit, absl::Minutes(1));
    if (!held.ok()) return held;
    return ledger.Settle({id, ClientAccount("alice"), {Record(id, "p1", 100'000)}}).status();
  };
  // Both pooled connections used (and their statements prepared).
  for (const char* id : {"r1", "r2", "r3"}) ASSERT_TRUE(serve(id).ok()) << id;

  ASSERT_FALSE(pg->Sql("restarts", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = 'restarts' AND pid <> pg_backend_pid()")
                   .empty())
      << pg->error();
  // Terminating is asynchronous: wait (bounded) until the backends are gone, so their
  // goodbyes are on the ledger's sockets.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = pg->Sql("restarts", "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "'restarts' AND pid <> pg_backend_pid()") == "0\n";
  }
  ASSERT_TRUE(gone) << "the backends did not exit";
  for (const char* id : {"r4", "r5", "r6"}) {
    absl::Status s = serve(id);
    EXPECT_TRUE(s.ok()) << id << ": " << s;
  }

  ASSERT_TRUE(pg->Halt()) << pg->error();
  for (int i = 0; i < 3; ++i) {  // every pooled connection finds the server gone
    absl::Status s = serve("down");
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_THAT(s.message(), HasSubstr("PostgreSQL")) << s;
  }
  ASSERT_TRUE(pg->Resume()) << pg->error();
  for (const char* id : {"down", "r7"}) {
    absl::Status s = serve(id);
    EXPECT_TRUE(s.ok()) << id << ": " << s;
  }

  EXPECT_EQ(*ledger.Balance(ClientAccount("alice")), 10 * kCredit - 8 * 100'000);
  EXPECT_EQ(*ledger.Balance(ProviderAccount("p1")), 8 * 100'000);
  EXPECT_EQ(*ledger.Available(ClientAccount("alice")), 10 * kCredit - 8 * 100'000)
      << "no hold is left behind";
  auto report = ledger.Verify();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->transactions, 1 + 8);
}

INSTANTIATE_TEST_SUITE_P(Engines, LedgerEngineTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace loom
