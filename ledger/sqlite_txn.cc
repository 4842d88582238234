#include "ledger/sqlite_txn.h"

#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "ledger/ledger_admin.h"
#include "ledger/ledger_rules.h"
#include "ledger/pricing.h"

namespace loom {

int SqliteTxn::Changes() const { return sqlite3_changes(conn_.db); }

absl::Status SqliteTxn::EnsureAccount(const std::string& id) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckAccountId(id));
  if (conn_.known_accounts.count(id)) return absl::OkStatus();
  created_.push_back(id);
  LOOM_RETURN_IF_ERROR(Prepare("INSERT INTO accounts(id, kind, created_at_ms) VALUES(?1, ?2, ?3) "
                               "ON CONFLICT(id) DO NOTHING")
                           .Bind(1, id)
                           .Bind(2, AccountKind(id))
                           .Bind(3, NowMs())
                           .Run());
  return Prepare("INSERT INTO balances(account_id, balance_micro) VALUES(?1, 0) "
                 "ON CONFLICT(account_id) DO NOTHING")
      .Bind(1, id)
      .Run();
}

absl::StatusOr<int64_t> AvailableBalance(SqliteConn& conn, int64_t now_ms,
                                         const std::string& account, const std::string& except) {
  sqlite::Statement q(conn.db,
      "SELECT (SELECT COALESCE(SUM(balance_micro), 0) FROM balances WHERE account_id = ?1) "
      "- (SELECT COALESCE(SUM(amount_micro), 0) FROM reservations WHERE account_id = ?1 "
      "AND expires_at_ms > ?2 AND request_id != ?3)",
      &conn.cache);
  q.Bind(1, account).Bind(2, now_ms).Bind(3, except);
  LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
  return row ? q.Int(0) : 0;
}

absl::StatusOr<int64_t> SqliteTxn::Append(const std::string& kind, const std::string& reference,
                                          int64_t amount, const std::string& digest,
                                          const Entries& entries) {
  int64_t sum = 0;
  for (const auto& [account, value] : entries) sum += value;
  if (sum != 0) {
    return absl::InternalError(absl::StrCat("ledger: entries of ", reference, " sum to ", sum));
  }
  // The chain's tip; the write lock is held (BEGIN IMMEDIATE), so no other process appends
  // between this read and the insert, and the new id is the next one.
  std::string prev;
  int64_t id = 1;
  {
    sqlite::Statement last = Prepare("SELECT id, hash FROM transactions ORDER BY id DESC LIMIT 1");
    LOOM_ASSIGN_OR_RETURN(bool row, last.Step());
    if (row) {
      id = last.Int(0) + 1;
      prev = last.Text(1);
    }
  }
  const int64_t now_ms = NowMs();
  const std::string hash = Sha256Hex(
      TxnCanonical(kChainVersion, prev, id, kind, reference, amount, now_ms, digest, entries));
  LOOM_RETURN_IF_ERROR(Prepare("INSERT INTO transactions(id, kind, reference, amount_micro, "
                               "created_at_ms, records_digest, prev_hash, hash, chain_version) "
                               "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
                           .Bind(1, id)
                           .Bind(2, kind)
                           .Bind(3, reference)
                           .Bind(4, amount)
                           .Bind(5, now_ms)
                           .Bind(6, digest)
                           .Bind(7, prev)
                           .Bind(8, hash)
                           .Bind(9, int64_t{kChainVersion})
                           .Run());
  // All entries in one statement (one prepared statement per entry count); each balance moves
  // by its primary key.
  const int n = static_cast<int>(entries.size());
  std::string insert_sql = "INSERT INTO entries(txn_id, account_id, amount_micro) VALUES";
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&insert_sql, i ? "," : "", "(?1,?", 2 * i + 2, ",?", 2 * i + 3, ")");
  }
  sqlite::Statement insert = Prepare(insert_sql);
  insert.Bind(1, id);
  for (int i = 0; i < n; ++i) {
    insert.Bind(2 * i + 2, entries[i].first).Bind(2 * i + 3, entries[i].second);
  }
  LOOM_RETURN_IF_ERROR(insert.Run());
  for (const auto& [account, value] : entries) {
    // SQLite turns an integer overflow into a float: the bound is checked in the same
    // statement (a float past it compares as past it), so no balance ever wraps or rounds.
    LOOM_RETURN_IF_ERROR(
        Prepare("UPDATE balances SET balance_micro = balance_micro + ?2 WHERE account_id = ?1 "
                "AND balance_micro + ?2 BETWEEN -?3 AND ?3")
            .Bind(1, account)
            .Bind(2, value)
            .Bind(3, LedgerAdmin::kMaxBalanceMicro)
            .Run());
    if (Changes() != 1) {
      sqlite::Statement exists = Prepare("SELECT 1 FROM balances WHERE account_id = ?1");
      LOOM_ASSIGN_OR_RETURN(bool found, exists.Bind(1, account).Step());
      if (found) {
        return absl::OutOfRangeError(absl::StrCat(
            "transaction ", reference, " would take ", account, "'s balance past ",
            FormatCredits(LedgerAdmin::kMaxBalanceMicro), " credits, the most the ledger holds; refused"));
      }
      return absl::InternalError(absl::StrCat("ledger: transaction ", reference, " moves ",
                                              account, "'s balance, which does not exist"));
    }
  }
  return id;
}

}  // namespace loom
