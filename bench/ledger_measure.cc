#include "bench/ledger_measure.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ledger/sqlite_ledger.h"

namespace loom::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

std::string Fresh(const LedgerBenchOptions& options, const std::string& name) {
  std::string path = absl::StrCat(options.dir, "/loom-bench-", name, ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  return path;
}

void Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::cerr << "ledger bench: " << sql << ": " << (error ? error : "?") << "\n";
    std::abort();
  }
}

sqlite3* OpenRaw(const LedgerBenchOptions& options, const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) std::abort();
  Exec(db, "PRAGMA journal_mode=WAL");
  Exec(db, "PRAGMA foreign_keys=ON");
  Exec(db, absl::StrCat("PRAGMA synchronous=", options.synchronous));
  return db;
}

sqlite3_stmt* Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
    std::cerr << "ledger bench: " << sql << ": " << sqlite3_errmsg(db) << "\n";
    std::abort();
  }
  return stmt;
}

void StepReset(sqlite3_stmt* stmt) {
  if (sqlite3_step(stmt) != SQLITE_DONE) std::abort();
  sqlite3_reset(stmt);
}

}  // namespace

double FsyncP50Us(const LedgerBenchOptions& options) {
  sqlite3* db = OpenRaw(options, Fresh(options, "fsync"));
  Exec(db, "CREATE TABLE t(v INTEGER)");
  std::vector<double> us;
  for (int i = 0; i < 200; ++i) {
    auto start = SteadyClock::now();
    Exec(db, "INSERT INTO t VALUES(1)");  // autocommit: one durable commit
    us.push_back(SecondsSince(start) * 1e6);
  }
  sqlite3_close(db);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

double RawBatchedPerSecond(const LedgerBenchOptions& options, int settlements) {
  const std::string path = Fresh(options, "raw");
  {
    // The ledger's own schema, then closed: the raw inserts go into the same tables.
    auto ledger = SqliteLedger::Open({.path = path, .synchronous = options.synchronous});
    if (!ledger.ok()) std::abort();
  }
  sqlite3* db = OpenRaw(options, path);
  Exec(db,
       "INSERT INTO accounts(id, kind, created_at_ms) VALUES ('client:c', 'client', 0), "
       "('provider:p0', 'provider', 0), ('provider:p1', 'provider', 0)");
  const std::string hash(64, 'a');
  sqlite3_stmt* txn = Prepare(
      db,
      "INSERT INTO transactions(id, kind, reference, amount_micro, created_at_ms, "
      "records_digest, prev_hash, hash) VALUES(?1, 'settle', ?2, 600, 0, ?3, ?3, ?3)");
  sqlite3_stmt* entry =
      Prepare(db, "INSERT INTO entries(txn_id, account_id, amount_micro) VALUES(?1, ?2, ?3)");
  sqlite3_stmt* contribution = Prepare(
      db,
      "INSERT INTO contributions(request_id, sub_task_id, attempt, txn_id, device_id, "
      "provider_id, model, role, token_count, weight, credits_micro, created_at_ms) "
      "VALUES(?1, ?2, 1, ?3, 'dev', ?4, 'm', 1, 64, 0.5, 300, 0)");
  auto start = SteadyClock::now();
  for (int i = 0; i < settlements; ++i) {
    if (i % 64 == 0) Exec(db, "BEGIN");
    const std::string request = absl::StrCat("req-", i);
    const std::string ref = absl::StrCat("settle:", request);
    sqlite3_bind_int(txn, 1, i + 1);
    sqlite3_bind_text(txn, 2, ref.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(txn, 3, hash.c_str(), -1, SQLITE_STATIC);
    StepReset(txn);
    const std::pair<const char*, int> entries[] = {
        {"client:c", -600}, {"provider:p0", 300}, {"provider:p1", 300}};
    for (const auto& [account, amount] : entries) {
      sqlite3_bind_int(entry, 1, i + 1);
      sqlite3_bind_text(entry, 2, account, -1, SQLITE_STATIC);
      sqlite3_bind_int(entry, 3, amount);
      StepReset(entry);
    }
    for (int r = 0; r < 2; ++r) {
      const std::string task = absl::StrCat("t", r), provider = absl::StrCat("p", r);
      sqlite3_bind_text(contribution, 1, request.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(contribution, 2, task.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int(contribution, 3, i + 1);
      sqlite3_bind_text(contribution, 4, provider.c_str(), -1, SQLITE_TRANSIENT);
      StepReset(contribution);
    }
    if (i % 64 == 63 || i == settlements - 1) Exec(db, "COMMIT");
  }
  const double rate = settlements / SecondsSince(start);
  sqlite3_finalize(txn);
  sqlite3_finalize(entry);
  sqlite3_finalize(contribution);
  sqlite3_close(db);
  return rate;
}

double SettlePerSecond(const LedgerBenchOptions& options, int settlements, int threads) {
  auto opened = SqliteLedger::Open(
      {.path = Fresh(options, absl::StrCat("settle", threads)), .synchronous = options.synchronous});
  if (!opened.ok()) std::abort();
  std::unique_ptr<SqliteLedger> ledger = *std::move(opened);
  if (!ledger->Grant(ClientAccount("c"), int64_t{1} << 50, "bench").ok()) std::abort();
  std::atomic<int> next{0};
  auto start = SteadyClock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < settlements; i = next++) {
        const std::string id = absl::StrCat("req-", i);
        std::vector<v1::ContributionRecord> records(2);
        for (int r = 0; r < 2; ++r) {
          records[r].set_request_id(id);
          records[r].set_sub_task_id(absl::StrCat("t", r));
          records[r].set_attempt(1);
          records[r].set_device_id("dev");
          records[r].set_provider_id(absl::StrCat("p", r));
          records[r].set_model("m");
          records[r].set_token_count(64);
          records[r].set_credits_micro(300);
        }
        if (!ledger->Settle({id, ClientAccount("c"), records}).ok()) std::abort();
      }
    });
  }
  for (auto& t : pool) t.join();
  return settlements / SecondsSince(start);
}

}  // namespace loom::bench
