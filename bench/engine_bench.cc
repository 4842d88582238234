// Settlements per second on each ledger engine, in one run on this machine (issue 19):
//   raw PostgreSQL    the rows one settlement writes (a transaction, three entries, two
//                     contribution rows, the client's balance move), inserted by the same
//                     number of threads, one SQL transaction each, no checks, no locks beyond
//                     the rows
//   PostgreSQL, 1     PostgresLedger::Settle from `threads` threads, one coordinator (one
//                     ledger, `threads` connections)
//   PostgreSQL, 2     the same threads split over two coordinators (two ledgers with their own
//                     holders and chains) on the same database: the design must not serialise
//                     them on a hot row
//   SQLite            SqliteLedger::Settle from the same threads (group commit)
// Each settlement is a different client's (clients serialise on their own balance row by
// design; a mesh has many), paying two providers. The PostgreSQL server is a real one started
// for the run in a temporary directory, with its default durability (fsync on).
//
//   build/bin/loom_engine_bench [--n=2000] [--threads=16] [--json]
#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <libpq-fe.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ledger/ledger_admin.h"
#include "ledger/postgres_ledger.h"
#include "ledger/sqlite_ledger.h"
#include "tests/integration/postgres_server.h"
#include "tests/integration/process_harness.h"

ABSL_FLAG(int, n, 2000, "Settlements per measurement.");
ABSL_FLAG(int, threads, 16, "Threads settling at once.");
ABSL_FLAG(int, chain_shards, 32, "Hash chains per coordinator (PostgresLedgerOptions).");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of a table.");

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::vector<loom::v1::ContributionRecord> Records(const std::string& id) {
  std::vector<loom::v1::ContributionRecord> records(2);
  for (int r = 0; r < 2; ++r) {
    records[r].set_request_id(id);
    records[r].set_sub_task_id(absl::StrCat("t", r));
    records[r].set_attempt(1);
    records[r].set_device_id(absl::StrCat("dev", r));
    records[r].set_provider_id(absl::StrCat("p", r));
    records[r].set_model("m");
    records[r].set_token_count(64);
    records[r].set_credits_micro(300);
  }
  return records;
}

constexpr int kClients = 256;

// Settles n requests from `threads` threads over `ledgers` (thread t uses ledgers[t % size]).
double SettlePerSecond(const std::vector<loom::LedgerAdmin*>& ledgers, int n, int threads,
                       const std::string& tag) {
  std::atomic<int> next{0};
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      loom::LedgerAdmin* ledger = ledgers[t % ledgers.size()];
      for (int i = next++; i < n; i = next++) {
        const std::string id = absl::StrCat(tag, "-", i);
        auto s = ledger->Settle({id, loom::ClientAccount(absl::StrCat("c", i % kClients)), Records(id)});
        if (!s.ok()) {
          std::cerr << "engine_bench: " << s.status() << "\n";
          std::abort();
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  return n / Seconds(start);
}

void Fund(loom::LedgerAdmin* ledger) {
  for (const char* p : {"provider:p0", "provider:p1"}) {
    if (!ledger->Grant(p, 1, absl::StrCat("bench-", p)).ok()) std::abort();
  }
  for (int c = 0; c < kClients; ++c) {
    if (!ledger->Grant(loom::ClientAccount(absl::StrCat("c", c)), int64_t{1} << 40,
                       absl::StrCat("bench-c", c))
             .ok()) {
      std::abort();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_n), threads = absl::GetFlag(FLAGS_threads);
  const int shards = absl::GetFlag(FLAGS_chain_shards);
  loom::testing::PostgresServer pg;
  if (!pg.Start()) {
    std::cerr << "engine_bench: PostgreSQL did not start: " << pg.error() << "\n";
    return 1;
  }
  // Raw: the same rows, no ledger logic.
  const std::string raw_db = pg.CreateDatabase("raw");
  double raw = 0;
  {
    auto ledger = loom::PostgresLedger::Open({.conninfo = raw_db, .connections = 1});  // schema
    if (!ledger.ok()) std::abort();
    Fund(ledger->get());
    std::atomic<int> next{0};
    const auto start = Clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        PGconn* c = PQconnectdb(raw_db.c_str());
        auto exec = [&](const std::string& sql) {
          PGresult* r = PQexec(c, sql.c_str());
          if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            std::cerr << "engine_bench raw: " << PQerrorMessage(c);
            std::abort();
          }
          PQclear(r);
        };
        for (int i = next++; i < n; i = next++) {
          const int64_t id = 1'000'000 + i;
          const std::string client = absl::StrCat("client:c", i % kClients);
          exec(absl::StrCat(
              "BEGIN; INSERT INTO transactions(id, kind, reference, amount_micro, created_at_ms, "
              "records_digest, chain, chain_seq, prev_hash, hash) VALUES(", id, ", 'settle', 'raw-", i,
              "', 600, 0, 'd', 'raw', ", id, ", 'p', 'h'); INSERT INTO entries VALUES(", id, ", '",
              client, "', -600), (", id, ", 'provider:p0', 300), (", id,
              ", 'provider:p1', 300); INSERT INTO contributions(request_id, sub_task_id, attempt, "
              "txn_id, device_id, provider_id, model, role, token_count, weight, credits_micro, "
              "created_at_ms) VALUES('raw-", i, "', 't0', 1, ", id, ", 'dev0', 'p0', 'm', 1, 64, 0.5, "
              "300, 0), ('raw-", i, "', 't1', 1, ", id, ", 'dev1', 'p1', 'm', 1, 64, 0.5, 300, 0); "
              "UPDATE balances SET balance_micro = balance_micro - 600 WHERE account_id = '", client,
              "'; COMMIT"));
        }
        PQfinish(c);
      });
    }
    for (auto& t : pool) t.join();
    raw = n / Seconds(start);
  }
  double pg1 = 0, pg2 = 0, sqlite = 0;
  {
    const std::string db = pg.CreateDatabase("one");
    auto a = loom::PostgresLedger::Open({.conninfo = db, .connections = threads, .holder = "a",
                                          .chain_shards = shards});
    if (!a.ok()) std::abort();
    Fund(a->get());
    SettlePerSecond({a->get()}, threads * 4, threads, "warm");  // providers' rows exist after
    pg1 = SettlePerSecond({a->get()}, n, threads, "one");
  }
  {
    const std::string db = pg.CreateDatabase("two");
    auto a = loom::PostgresLedger::Open({.conninfo = db, .connections = threads / 2, .holder = "a",
                                          .chain_shards = shards});
    auto b = loom::PostgresLedger::Open({.conninfo = db, .connections = threads / 2, .holder = "b",
                                          .chain_shards = shards});
    if (!a.ok() || !b.ok()) std::abort();
    Fund(a->get());
    SettlePerSecond({a->get(), b->get()}, threads * 4, threads, "warm");
    pg2 = SettlePerSecond({a->get(), b->get()}, n, threads, "two");
  }
  {
    const std::string dir = loom::testing::MakeTempDir();
    auto l = loom::SqliteLedger::Open({.path = dir + "/bench.db"});
    if (!l.ok()) std::abort();
    Fund(l->get());
    sqlite = SettlePerSecond({l->get()}, n, threads, "sqlite");
    loom::testing::RunCommand("/bin/rm", {"-rf", dir});
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << absl::StrFormat(
        "{\"threads\": %d, \"raw_postgresql_per_s\": %.0f, \"postgresql_1_coordinator_per_s\": %.0f, "
        "\"postgresql_2_coordinators_per_s\": %.0f, \"sqlite_per_s\": %.0f}\n",
        threads, raw, pg1, pg2, sqlite);
    return 0;
  }
  std::cout << absl::StrFormat(
      "%d settlements each, %d threads, %d clients, durable commits\n"
      "raw PostgreSQL, same rows           %8.0f settlements/s\n"
      "PostgreSQL ledger, 1 coordinator    %8.0f settlements/s  (%.2fx raw)\n"
      "PostgreSQL ledger, 2 coordinators   %8.0f settlements/s  (%.2fx raw, %.2fx one coordinator)\n"
      "SQLite ledger                       %8.0f settlements/s\n",
      n, threads, kClients, raw, pg1, pg1 / raw, pg2, pg2 / raw, pg2 / pg1, sqlite);
  return 0;
}
