// File: bench/engine_measure.cc
#include "bench/engine_measure.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include <libpq-fe.h>

#include "absl/strings/str_cat.h"
#include "ledger/ledger_admin.h"
#include "ledger/postgres_ledger.h"
#include "ledger/sqlite_ledger.h"
#include "tests/integration/process_harness.h"

namespace loom::bench {
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

EngineFigures MeasureEngines(testing::PostgresServer& pg, int n, int threads, int chain_shards) {
  EngineFigures out;
  // Raw: the same rows, no ledger logic.
  const std::string raw_db = pg.CreateDatabase("raw");
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
    out.raw_postgresql = n / Seconds(start);
  }
  {
    const std::string db = pg.CreateDatabase("one");
    auto a = loom::PostgresLedger::Open({.conninfo = db, .connections = threads, .holder = "a",
                                          .chain_shards = chain_shards});
    if (!a.ok()) std::abort();
    Fund(a->get());
    SettlePerSecond({a->get()}, threads * 4, threads, "warm");  // providers' rows exist after
    out.postgresql_1 = SettlePerSecond({a->get()}, n, threads, "one");
  }
  {
    const std::string db = pg.CreateDatabase("two");
    auto a = loom::PostgresLedger::Open({.conninfo = db, .connections = threads / 2, .holder = "a",
                                          .chain_shards = chain_shards});
    auto b = loom::PostgresLedger::Open({.conninfo = db, .connections = threads / 2, .holder = "b",
                                          .chain_shards = chain_shards});
    if (!a.ok() || !b.ok()) std::abort();
    Fund(a->get());
    SettlePerSecond({a->get(), b->get()}, threads * 4, threads, "warm");
    out.postgresql_2 = SettlePerSecond({a->get(), b->get()}, n, threads, "two");
  }
  {
    const std::string dir = loom::testing::MakeTempDir();
    auto l = loom::SqliteLedger::Open({.path = dir + "/bench.db"});
    if (!l.ok()) std::abort();
    Fund(l->get());
    out.sqlite = SettlePerSecond({l->get()}, n, threads, "sqlite");
    loom::testing::RunCommand("/bin/rm", {"-rf", dir});
  }
  return out;
}

}  // namespace loom::bench
