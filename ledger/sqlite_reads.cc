// The SQLite ledger's reads: balances, accounts, records, payouts, transactions, kept answers,
// outcomes, and the whole-ledger export. Each holds the connection for one query (Export: for
// one read transaction, a snapshot).
#include <map>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_rules.h"
#include "ledger/sqlite_ledger.h"

namespace loom {
namespace {

// An outcome row (model, category, good, bad); false for a category this build does not know.
bool OutcomeFromRow(const sqlite::Statement& q, OutcomeDelta* out) {
  const int64_t category = q.Int(1);
  if (!v1::TaskCategory_IsValid(static_cast<int>(category))) return false;
  *out = {q.Text(0), static_cast<v1::TaskCategory>(category), q.Double(2), q.Double(3)};
  return true;
}

}  // namespace

absl::StatusOr<int64_t> SqliteLedger::Balance(const std::string& account_id) {
  absl::MutexLock lock(&mu_);
  sqlite::Statement q = Prepared("SELECT balance_micro FROM balances WHERE account_id = ?1");
  q.Bind(1, account_id);
  LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
  return row ? q.Int(0) : 0;
}

absl::StatusOr<int64_t> SqliteLedger::Available(const std::string& account_id) {
  absl::MutexLock lock(&mu_);
  return AvailableBalance(conn_, absl::ToUnixMillis(clock_->Now()), account_id, "");
}

absl::StatusOr<StoredAnswer> SqliteLedger::Answer(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  sqlite::Statement q = Prepared(
      "SELECT a.account_id, a.response, a.txn_id, t.amount_micro FROM answers a "
      "JOIN transactions t ON t.id = a.txn_id WHERE a.request_id = ?1 AND "
      "a.created_at_ms >= ?2");
  q.Bind(1, request_id)
      .Bind(2, absl::ToUnixMillis(clock_->Now()) -
                   absl::ToInt64Milliseconds(options_.answer_retention));
  LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no answer is kept for request ", request_id));
  return StoredAnswer{q.Text(0), q.Blob(1), absl::StrCat(q.Int(2)), q.Int(3)};
}

absl::StatusOr<std::vector<v1::ContributionRecord>> SqliteLedger::ListRecords(
    const RecordFilter& filter) {
  absl::MutexLock lock(&mu_);
  sqlite::Statement q = PreparedOnce(absl::StrCat(
      "SELECT ", sqlite::kAllRecordColumns,
      " FROM contributions WHERE (?1 = '' OR request_id = ?1) AND (?2 = '' OR provider_id = ?2) "
      "ORDER BY created_at_ms, request_id, sub_task_id, attempt LIMIT ?3"));
  q.Bind(1, filter.request_id).Bind(2, filter.provider_id).Bind(3, filter.limit);
  return sqlite::Collect<v1::ContributionRecord>(q, sqlite::RecordFromRow);
}

absl::StatusOr<std::vector<OutcomeDelta>> SqliteLedger::Outcomes() {
  absl::MutexLock lock(&mu_);
  sqlite::Statement q =
      Prepared("SELECT model, category, good, bad FROM outcomes ORDER BY model, category");
  std::vector<OutcomeDelta> out;
  LOOM_RETURN_IF_ERROR(sqlite::ForEachRow(q, [&](sqlite::Statement& r) {
    OutcomeDelta d;
    if (OutcomeFromRow(r, &d)) out.push_back(d);
  }));
  return out;
}

absl::StatusOr<std::vector<AccountInfo>> SqliteLedger::Accounts() {
  absl::MutexLock lock(&mu_);
  sqlite::Statement q = PreparedOnce(
      "SELECT a.id, a.kind, "
      "(SELECT COALESCE(SUM(balance_micro), 0) FROM balances b WHERE b.account_id = a.id), "
      "(SELECT COALESCE(SUM(amount_micro), 0) FROM reservations r WHERE r.account_id = "
      "a.id AND r.expires_at_ms > ?1) FROM accounts a ORDER BY a.kind, a.id");
  q.Bind(1, absl::ToUnixMillis(clock_->Now()));
  return sqlite::Collect<AccountInfo>(q, [](const sqlite::Statement& r) {
    return AccountInfo{r.Text(0), r.Text(1), r.Int(2), r.Int(3)};
  });
}

absl::StatusOr<std::vector<TransactionInfo>> SqliteLedger::RecentTransactions(int limit) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckListLimit(limit));
  absl::MutexLock lock(&mu_);
  sqlite::Statement q = PreparedOnce(
      "SELECT id, kind, reference, amount_micro, created_at_ms FROM transactions "
      "ORDER BY id DESC LIMIT ?1");
  q.Bind(1, int64_t{limit});
  return sqlite::Collect<TransactionInfo>(q, [](const sqlite::Statement& r) {
    return TransactionInfo{r.Int(0), r.Text(1), r.Text(2), r.Int(3), r.Int(4)};
  });
}

absl::StatusOr<std::vector<PayoutRow>> SqliteLedger::Payouts(const PayoutFilter& filter) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, PayoutRow> rows;
  {
    sqlite::Statement q = PreparedOnce(
        "SELECT provider_id, SUM(credits_micro), SUM(token_count), "
        "COUNT(DISTINCT request_id), COUNT(DISTINCT device_id) FROM contributions "
        "WHERE created_at_ms >= ?1 AND created_at_ms < ?2 AND (?3 = '' OR provider_id = ?3) "
        "GROUP BY provider_id");
    q.Bind(1, filter.since_ms).Bind(2, filter.until_ms).Bind(3, filter.provider_id);
    LOOM_RETURN_IF_ERROR(sqlite::ForEachRow(q, [&](sqlite::Statement& s) {
      PayoutRow& r = rows[s.Text(0)];
      r.provider_id = s.Text(0);
      r.earned_micro = s.Int(1);
      r.tokens = s.Int(2);
      r.requests = s.Int(3);
      r.devices = s.Int(4);
    }));
  }
  {
    sqlite::Statement q = PreparedOnce(
        "SELECT substr(e.account_id, 10), -SUM(e.amount_micro) FROM entries e "
        "JOIN transactions t ON t.id = e.txn_id WHERE t.kind = 'payout' "
        "AND e.account_id LIKE 'provider:%' AND t.created_at_ms >= ?1 "
        "AND t.created_at_ms < ?2 AND (?3 = '' OR e.account_id = 'provider:' || ?3) "
        "GROUP BY e.account_id");
    q.Bind(1, filter.since_ms).Bind(2, filter.until_ms).Bind(3, filter.provider_id);
    LOOM_RETURN_IF_ERROR(sqlite::ForEachRow(q, [&](sqlite::Statement& s) {
      PayoutRow& r = rows[s.Text(0)];
      r.provider_id = s.Text(0);
      r.paid_out_micro = s.Int(1);
    }));
  }
  std::vector<PayoutRow> out;
  for (auto& [id, r] : rows) {
    sqlite::Statement b = PreparedOnce("SELECT balance_micro FROM balances WHERE account_id = ?1");
    b.Bind(1, ProviderAccount(id));
    LOOM_ASSIGN_OR_RETURN(bool row, b.Step());
    r.unpaid_micro = row ? b.Int(0) : 0;
    out.push_back(r);
  }
  return out;
}

absl::StatusOr<LedgerCopy> SqliteLedger::Export() {
  absl::MutexLock lock(&mu_);
  // One read transaction: a snapshot (WAL readers see one commit throughout).
  sqlite3* const db = conn_.db;
  LOOM_RETURN_IF_ERROR(sqlite::Exec(db, "BEGIN"));
  auto end = absl::MakeCleanup([db] { (void)sqlite::Exec(db, "COMMIT"); });
  auto rows = [db](absl::string_view sql, auto&& each) {
    sqlite::Statement q(db, sql);
    return sqlite::ForEachRow(q, each);
  };
  LedgerCopy copy;
  LOOM_RETURN_IF_ERROR(rows("SELECT id, kind, created_at_ms FROM accounts ORDER BY id",
                            [&](sqlite::Statement& q) {
                              copy.accounts.push_back({q.Text(0), q.Text(1), q.Int(2)});
                            }));
  std::map<int64_t, size_t> by_id;
  LOOM_RETURN_IF_ERROR(rows(
      "SELECT id, kind, reference, amount_micro, created_at_ms, records_digest "
      "FROM transactions ORDER BY id",
      [&](sqlite::Statement& q) {
        by_id[q.Int(0)] = copy.transactions.size();
        copy.transactions.push_back(
            {q.Int(0), q.Text(1), q.Text(2), q.Int(3), q.Int(4), q.Text(5), {}});
      }));
  LOOM_RETURN_IF_ERROR(rows(
      "SELECT txn_id, account_id, amount_micro FROM entries ORDER BY txn_id, account_id",
      [&](sqlite::Statement& q) {
        auto it = by_id.find(q.Int(0));
        if (it != by_id.end()) {
          copy.transactions[it->second].entries.emplace_back(q.Text(1), q.Int(2));
        }
      }));
  LOOM_RETURN_IF_ERROR(rows(absl::StrCat("SELECT ", sqlite::kAllRecordColumns,
                                         " FROM contributions ORDER BY request_id, sub_task_id, "
                                         "attempt"),
                            [&](sqlite::Statement& q) {
                              copy.records.push_back(sqlite::RecordFromRow(q));
                            }));
  LOOM_RETURN_IF_ERROR(rows(
      "SELECT request_id, account_id, txn_id, response, created_at_ms FROM answers",
      [&](sqlite::Statement& q) {
        copy.answers.push_back({q.Text(0), q.Text(1), q.Int(2), q.Blob(3), q.Int(4)});
      }));
  LOOM_RETURN_IF_ERROR(rows(
      "SELECT id, client_account, secret_sha256, created_at_ms, revoked_at_ms FROM api_keys",
      [&](sqlite::Statement& q) {
        copy.keys.push_back({q.Text(0), q.Text(1), q.Text(2), q.Int(3), q.Int(4)});
      }));
  LOOM_RETURN_IF_ERROR(rows(
      "SELECT request_id, account_id, rating, sub_task_id, created_at_ms FROM feedback",
      [&](sqlite::Statement& q) {
        copy.verdicts.push_back({q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4)});
      }));
  LOOM_RETURN_IF_ERROR(rows("SELECT model, category, good, bad FROM outcomes",
                            [&](sqlite::Statement& q) {
                              OutcomeDelta d;
                              if (OutcomeFromRow(q, &d)) copy.outcomes.push_back(d);
                            }));
  return copy;
}

}  // namespace loom
