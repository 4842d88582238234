// File: ledger/postgres_reads.cc
// The PostgreSQL ledger's reads: kept answers, records, accounts, transactions, payouts.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <libpq-fe.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_hash.h"
#include "ledger/ledger_rules.h"
#include "ledger/postgres_conn.h"
#include "ledger/pricing.h"

namespace loom {

using pg::RecordFromRow;
using pg::Result;
using pg::kDerivedBalance;
using pg::kRecordColumns;

// ---- Reads ----

absl::StatusOr<StoredAnswer> PostgresLedger::Answer(const std::string& request_id) {
  StoredAnswer out;
  bool found = false;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result q, c.Exec("SELECT a.account_id, a.response, a.txn_id, t.amount_micro FROM answers a "
                         "JOIN transactions t ON t.id = a.txn_id WHERE a.request_id = $1 AND "
                         "a.created_at_ms >= $2",
                         {request_id, absl::ToUnixMillis(clock_->Now()) -
                                          absl::ToInt64Milliseconds(options_.answer_retention)}));
    if (q.rows() == 0) return absl::OkStatus();
    found = true;
    out = StoredAnswer{q.Text(0, 0), q.Bytes(0, 1), q.Text(0, 2), q.Int(0, 3)};
    return absl::OkStatus();
  }));
  if (!found) return absl::NotFoundError(absl::StrCat("no answer is kept for request ", request_id));
  return out;
}

absl::StatusOr<std::vector<v1::ContributionRecord>> PostgresLedger::ListRecords(
    const RecordFilter& filter) {
  std::vector<v1::ContributionRecord> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result q, c.Exec(absl::StrCat("SELECT ", kRecordColumns,
                                      " FROM contributions WHERE ($1::text = '' OR request_id = $1) AND "
                                      "($2::text = '' OR provider_id = $2) ORDER BY created_at_ms, "
                                      "request_id, sub_task_id, attempt LIMIT $3"),
                         {filter.request_id, filter.provider_id, filter.limit}));
    for (int i = 0; i < q.rows(); ++i) out.push_back(RecordFromRow(q, i));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<AccountInfo>> PostgresLedger::Accounts() {
  std::vector<AccountInfo> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result q,
        c.Exec("SELECT a.id, a.kind, CASE WHEN a.kind IN ('provider', 'fee') THEN (SELECT "
               "COALESCE(SUM(e.amount_micro), 0) FROM entries e WHERE e.account_id = a.id) ELSE "
               "COALESCE((SELECT b.balance_micro FROM balances b WHERE b.account_id = a.id), 0) "
               "END, (SELECT "
               "COALESCE(SUM(r.amount_micro), 0) FROM reservations r WHERE r.account_id = a.id AND "
               "r.expires_at_ms > $1) FROM accounts a ORDER BY a.kind, a.id",
               {absl::ToUnixMillis(clock_->Now())}));
    for (int i = 0; i < q.rows(); ++i) {
      out.push_back({q.Text(i, 0), q.Text(i, 1), q.Int(i, 2), q.Int(i, 3)});
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<TransactionInfo>> PostgresLedger::RecentTransactions(int limit) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckListLimit(limit));
  std::vector<TransactionInfo> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result q, c.Exec("SELECT id, kind, reference, amount_micro, created_at_ms "
                                           "FROM transactions ORDER BY id DESC LIMIT $1",
                                           {int64_t{limit}}));
    for (int i = 0; i < q.rows(); ++i) {
      out.push_back({q.Int(i, 0), q.Text(i, 1), q.Text(i, 2), q.Int(i, 3), q.Int(i, 4)});
    }
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<PayoutRow>> PostgresLedger::Payouts(const PayoutFilter& filter) {
  std::map<std::string, PayoutRow> rows;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        Result earned,
        c.Exec("SELECT provider_id, SUM(credits_micro), SUM(token_count), COUNT(DISTINCT "
               "request_id), COUNT(DISTINCT device_id) FROM contributions WHERE created_at_ms >= $1 "
               "AND created_at_ms < $2 AND ($3::text = '' OR provider_id = $3) GROUP BY provider_id",
               {filter.since_ms, filter.until_ms, filter.provider_id}));
    for (int i = 0; i < earned.rows(); ++i) {
      PayoutRow& r = rows[earned.Text(i, 0)];
      r.provider_id = earned.Text(i, 0);
      r.earned_micro = earned.Int(i, 1);
      r.tokens = earned.Int(i, 2);
      r.requests = earned.Int(i, 3);
      r.devices = earned.Int(i, 4);
    }
    LOOM_ASSIGN_OR_RETURN(
        Result paid,
        c.Exec("SELECT substr(e.account_id, 10), -SUM(e.amount_micro) FROM entries e JOIN "
               "transactions t ON t.id = e.txn_id WHERE t.kind = 'payout' AND e.account_id LIKE "
               "'provider:%' AND t.created_at_ms >= $1 AND t.created_at_ms < $2 AND ($3::text = '' OR "
               "e.account_id = 'provider:' || $3::text) GROUP BY e.account_id",
               {filter.since_ms, filter.until_ms, filter.provider_id}));
    for (int i = 0; i < paid.rows(); ++i) {
      PayoutRow& r = rows[paid.Text(i, 0)];
      r.provider_id = paid.Text(i, 0);
      r.paid_out_micro = paid.Int(i, 1);
    }
    for (auto& [id, r] : rows) {
      LOOM_ASSIGN_OR_RETURN(r.unpaid_micro,
                            c.Int(kDerivedBalance, {ProviderAccount(id)}));
    }
    return absl::OkStatus();
  }));
  std::vector<PayoutRow> out;
  for (auto& [id, r] : rows) out.push_back(r);
  return out;
}

}  // namespace loom
