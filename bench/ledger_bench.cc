// Settlement throughput of the ledger beside raw SQLite on the same disk, in one run:
//   fsync      p50 of one durable single-row commit (the floor of any durable write)
//   raw        the same rows a settlement writes (transaction, 3 entries, 2 contribution rows),
//              inserted with prepared statements in batches of 64 per commit
//   settle x1  SqliteLedger::Settle from one thread (one group commit per settlement)
//   settle x16, x64  from 16 and 64 threads (the writer thread batches them into shared
//              commits; the raw baseline commits 64 at a time)
// All at the same synchronous setting (FULL unless --synchronous says otherwise).
//
//   build/bin/loom_ledger_bench [--n=3000] [--synchronous=FULL] [--dir=/tmp] [--json]
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ledger/sqlite_ledger.h"

ABSL_FLAG(int, n, 3000, "Settlements per measurement.");
ABSL_FLAG(std::string, synchronous, "FULL", "SQLite synchronous setting for every measurement.");
ABSL_FLAG(std::string, dir, "/tmp", "Directory for the database files (the disk measured).");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of a table.");

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Fresh(const std::string& name) {
  std::string path = absl::StrCat(absl::GetFlag(FLAGS_dir), "/loom-bench-", name, ".db");
  for (const char* s : {"", "-wal", "-shm"}) std::remove((path + s).c_str());
  return path;
}

sqlite3* OpenRaw(const std::string& path) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
  sqlite3_exec(db, absl::StrCat("PRAGMA synchronous=", absl::GetFlag(FLAGS_synchronous)).c_str(),
               nullptr, nullptr, nullptr);
  return db;
}

double FsyncP50Us() {
  sqlite3* db = OpenRaw(Fresh("fsync"));
  sqlite3_exec(db, "CREATE TABLE t(v INTEGER)", nullptr, nullptr, nullptr);
  std::vector<double> us;
  for (int i = 0; i < 200; ++i) {
    auto start = Clock::now();
    sqlite3_exec(db, "INSERT INTO t VALUES(1)", nullptr, nullptr, nullptr);  // autocommit
    us.push_back(Seconds(start) * 1e6);
  }
  sqlite3_close(db);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

double RawBatchedPerSecond(int n) {
  sqlite3* db = OpenRaw(Fresh("raw"));
  sqlite3_exec(db,
               "CREATE TABLE transactions(id INTEGER PRIMARY KEY, kind TEXT, reference TEXT UNIQUE, "
               "amount_micro INTEGER, created_at_ms INTEGER, records_digest TEXT, prev_hash TEXT, "
               "hash TEXT);"
               "CREATE TABLE entries(txn_id INTEGER, account_id TEXT, amount_micro INTEGER, "
               "PRIMARY KEY(txn_id, account_id));"
               "CREATE TABLE contributions(request_id TEXT, sub_task_id TEXT, attempt INTEGER, "
               "txn_id INTEGER, device_id TEXT, provider_id TEXT, model TEXT, role INTEGER, "
               "token_count INTEGER, weight REAL, credits_micro INTEGER, created_at_ms INTEGER, "
               "PRIMARY KEY(request_id, sub_task_id, attempt));",
               nullptr, nullptr, nullptr);
  sqlite3_stmt *txn, *entry, *contribution;
  sqlite3_prepare_v2(db, "INSERT INTO transactions VALUES(?1,'settle',?2,600,0,'d','p','h')", -1, &txn, nullptr);
  sqlite3_prepare_v2(db, "INSERT INTO entries VALUES(?1,?2,?3)", -1, &entry, nullptr);
  sqlite3_prepare_v2(db, "INSERT INTO contributions VALUES(?1,?2,1,?3,'dev','prov','m',1,64,0.5,300,0)",
                     -1, &contribution, nullptr);
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    if (i % 64 == 0) sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    const std::string ref = absl::StrCat("settle:req-", i);
    sqlite3_bind_int(txn, 1, i + 1);
    sqlite3_bind_text(txn, 2, ref.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_step(txn);
    sqlite3_reset(txn);
    for (const char* account : {"client:c", "provider:p0", "provider:p1"}) {
      sqlite3_bind_int(entry, 1, i + 1);
      sqlite3_bind_text(entry, 2, account, -1, SQLITE_STATIC);
      sqlite3_bind_int(entry, 3, 300);
      sqlite3_step(entry);
      sqlite3_reset(entry);
    }
    for (const char* task : {"t0", "t1"}) {
      sqlite3_bind_text(contribution, 1, ref.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(contribution, 2, task, -1, SQLITE_STATIC);
      sqlite3_bind_int(contribution, 3, i + 1);
      sqlite3_step(contribution);
      sqlite3_reset(contribution);
    }
    if (i % 64 == 63 || i == n - 1) sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  const double rate = n / Seconds(start);
  sqlite3_finalize(txn);
  sqlite3_finalize(entry);
  sqlite3_finalize(contribution);
  sqlite3_close(db);
  return rate;
}

double SettlePerSecond(int n, int threads) {
  auto ledger = *loom::SqliteLedger::Open(
      {.path = Fresh(absl::StrCat("settle", threads)), .synchronous = absl::GetFlag(FLAGS_synchronous)});
  (void)ledger->Grant(loom::ClientAccount("c"), int64_t{1} << 50, "bench");
  std::atomic<int> next{0};
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n; i = next++) {
        const std::string id = absl::StrCat("req-", i);
        std::vector<loom::v1::ContributionRecord> records(2);
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
        if (!ledger->Settle({id, loom::ClientAccount("c"), records}).ok()) std::abort();
      }
    });
  }
  for (auto& t : pool) t.join();
  return n / Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int n = absl::GetFlag(FLAGS_n);
  const double fsync = FsyncP50Us();
  const double raw = RawBatchedPerSecond(n);
  const double settle1 = SettlePerSecond(n, 1);
  const double settle16 = SettlePerSecond(n, 16);
  const double settle64 = SettlePerSecond(n, 64);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << absl::StrFormat(
        "{\"synchronous\": \"%s\", \"fsync_p50_us\": %.0f, \"raw_insert_per_s\": %.0f, "
        "\"settle_per_s\": %.0f, \"settle_1thread_per_s\": %.0f, \"settle_16threads_per_s\": %.0f}\n",
        absl::GetFlag(FLAGS_synchronous), fsync, raw, settle64, settle1, settle16);
    return 0;
  }
  std::cout << absl::StrFormat(
      "synchronous=%s, %d settlements, files in %s\n"
      "fsync p50 (one durable commit)      %8.0f us\n"
      "raw batched inserts, same rows      %8.0f settlements/s\n"
      "ledger settle, 1 thread             %8.0f settlements/s  (%.2fx raw)\n"
      "ledger settle, 16 threads           %8.0f settlements/s  (%.2fx raw)\n"
      "ledger settle, 64 threads           %8.0f settlements/s  (%.2fx raw)\n",
      absl::GetFlag(FLAGS_synchronous), n, absl::GetFlag(FLAGS_dir), fsync, raw, settle1,
      settle1 / raw, settle16, settle16 / raw, settle64, settle64 / raw);
  return 0;
}
