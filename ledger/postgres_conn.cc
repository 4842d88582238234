// File: ledger/postgres_conn.cc
#include "ledger/postgres_conn.h"

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
#include "ledger/pricing.h"

namespace loom::pg {

int64_t ToInt(const char* text) {
  int64_t v = 0;
  return text && absl::SimpleAtoi(text, &v) ? v : 0;
}

double ToDouble(const char* text) {
  double v = 0;
  return text && absl::SimpleAtod(text, &v) ? v : 0;
}

bool HasBalanceRow(const std::string& account) {
  const std::string kind = AccountKind(account);
  return kind == "client" || kind == "mint" || kind == "payout";
}


absl::Status EnsureAccount(Conn& c, const std::string& id, int64_t now_ms) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckAccountId(id));
  c.Defer({"INSERT INTO accounts(id, kind, created_at_ms) VALUES($1, $2, $3) "
           "ON CONFLICT (id) DO NOTHING",
           {id, AccountKind(id), now_ms}});
  if (HasBalanceRow(id)) {
    c.Defer({"INSERT INTO balances(account_id, balance_micro) VALUES($1, 0) "
             "ON CONFLICT (account_id) DO NOTHING",
             {id}});
  }
  return absl::OkStatus();
}

// Locks the row every move of `account` is serialised on, for the rest of the transaction
// (deferred: it travels with the next statement): the balance row, or for an account whose
// balance is derived (a provider's payouts) its account row.
void Lock(Conn& c, const std::string& account) {
  c.Defer({HasBalanceRow(account) ? "SELECT 1 FROM balances WHERE account_id = $1 FOR UPDATE"
                                  : "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
           {account}});
}

// Balance minus live reservations (but `except`'s); with `lock`, the balance row is locked
// for the rest of the transaction first.
absl::StatusOr<int64_t> AvailableOf(Conn& c, const std::string& account, const std::string& except,
                                    int64_t now_ms, bool lock) {
  // The lock is a statement of its own: under READ COMMITTED the reads after it take a new
  // snapshot, so they see what the previous holder of the lock committed (reads in the locking
  // statement itself would not).
  if (lock) Lock(c, account);
  LOOM_ASSIGN_OR_RETURN(
      Result r, c.Exec(absl::StrCat("SELECT ",
                                    HasBalanceRow(account)
                                        ? "(SELECT balance_micro FROM balances WHERE account_id = $1)"
                                        : "(SELECT COALESCE(SUM(amount_micro), 0) FROM entries "
                                          "WHERE account_id = $1)",
                                    ", (SELECT COALESCE(SUM(amount_micro), 0) FROM reservations "
                                    "WHERE account_id = $1 AND expires_at_ms > $2 AND request_id <> $3)"),
                       {account, now_ms, except}));
  return r.Int(0, 0) - r.Int(0, 1);
}

// Which of a holder's chains a reference goes to (FNV-1a: the same in every process).
uint64_t ShardOf(absl::string_view reference, int shards) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : reference) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h % static_cast<uint64_t>(shards);
}

absl::Status AddOutcomesIn(Conn& c, const std::vector<OutcomeDelta>& deltas, int64_t now_ms) {
  for (const OutcomeDelta& d : deltas) {
    LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO outcomes(model, category, good, bad, updated_at_ms) "
                                "VALUES($1, $2, $3, $4, $5) ON CONFLICT (model, category) DO "
                                "UPDATE SET good = outcomes.good + excluded.good, bad = "
                                "outcomes.bad + excluded.bad, updated_at_ms = excluded.updated_at_ms",
                                {d.model, int64_t{d.category}, d.good, d.bad, now_ms})
                             .status());
  }
  return absl::OkStatus();
}

std::string ChainCanonical(const std::string& chain, int64_t seq, const std::string& txn) {
  return absl::StrCat(chain.size(), ":", chain, absl::StrCat(seq).size(), ":", seq, txn);
}

// Appends a transaction: moves the balances (the paying account's row is locked already),
// locks its chain's head, and queues its rows and the new head in `writes` (the caller sends
// them with its own, in one round trip). Returns its id.
absl::StatusOr<int64_t> Append(Conn& c, const PostgresLedgerOptions& options, int64_t now_ms,
                               const std::string& kind, const std::string& reference,
                               int64_t amount, const std::string& digest, Entries entries,
                               std::vector<Conn::Statement>* writes) {
  int64_t sum = 0;
  for (const auto& [account, value] : entries) sum += value;
  if (sum != 0) {
    return absl::InternalError(absl::StrCat("ledger: entries of ", reference, " sum to ", sum));
  }
  std::sort(entries.begin(), entries.end());
  // Balance moves in account order; the table's bound refuses a move past kMaxBalanceMicro.
  // The rows they move are locked now, before the chain head, so the head stays the last
  // lock every transaction takes (a grant's client row would otherwise be locked after it).
  std::vector<std::string> rows;
  for (const auto& [account, value] : entries) {
    if (!HasBalanceRow(account)) continue;
    rows.push_back(account);
    writes->push_back({"UPDATE balances SET balance_micro = balance_micro + $2::bigint WHERE "
                       "account_id = $1",
                       {account, value}});
  }
  if (rows.size() > 1) {
    std::string list = "{";
    for (size_t i = 0; i < rows.size(); ++i) absl::StrAppend(&list, i ? "," : "", "\"", rows[i], "\"");
    list += "}";
    c.Defer({"SELECT account_id FROM balances WHERE account_id = ANY($1::text[]) "
             "ORDER BY account_id FOR UPDATE",
             {list}});
  }
  const std::string chain = absl::StrCat(
      options.holder, "/", ShardOf(reference, options.chain_shards));
  // Created on first use; the no-op update locks the head and reads it, with the new
  // transaction's id, in one round trip.
  LOOM_ASSIGN_OR_RETURN(Result head,
                        c.Exec("INSERT INTO chains(chain, seq, head) VALUES($1, 0, '') "
                               "ON CONFLICT (chain) DO UPDATE SET chain = excluded.chain "
                               "RETURNING seq, head, "
                               "nextval(pg_get_serial_sequence('transactions', 'id'))",
                               {chain}));
  if (head.rows() != 1) return absl::InternalError("ledger: chain head vanished");
  const int64_t seq = head.Int(0, 0) + 1;
  const std::string prev = head.Text(0, 1);
  const int64_t id = head.Int(0, 2);
  const std::string hash = Sha256Hex(ChainCanonical(
      chain, seq,
      TxnCanonical(kChainVersion, prev, id, kind, reference, amount, now_ms, digest, entries)));
  writes->push_back({"INSERT INTO transactions(id, kind, reference, amount_micro, created_at_ms, "
                     "records_digest, chain, chain_seq, prev_hash, hash) "
                     "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                     {id, kind, reference, amount, now_ms, digest, chain, seq, prev, hash}});
  std::string sql = "INSERT INTO entries(txn_id, account_id, amount_micro) VALUES";
  std::vector<Param> params = {id};
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StrAppend(&sql, i ? "," : "", "($1, $", 2 * i + 2, ", $", 2 * i + 3, ")");
    params.emplace_back(entries[i].first);
    params.emplace_back(entries[i].second);
  }
  writes->push_back({sql, params});
  writes->push_back({"UPDATE chains SET seq = $2, head = $3 WHERE chain = $1", {chain, seq, hash}});
  return id;
}


v1::ContributionRecord RecordFromRow(const Result& q, int row) {
  v1::ContributionRecord r;
  r.set_request_id(q.Text(row, 0));
  r.set_sub_task_id(q.Text(row, 1));
  r.set_attempt(static_cast<int32_t>(q.Int(row, 2)));
  r.set_device_id(q.Text(row, 3));
  r.set_provider_id(q.Text(row, 4));
  r.set_model(q.Text(row, 5));
  r.set_role(static_cast<v1::ContributionRole>(q.Int(row, 6)));
  r.set_token_count(q.Int(row, 7));
  r.set_weight(q.Double(row, 8));
  r.set_credits_micro(q.Int(row, 9));
  r.set_created_unix_ms(q.Int(row, 10));
  const int64_t category = q.Int(row, 11);
  if (v1::TaskCategory_IsValid(static_cast<int>(category))) {
    r.set_category(static_cast<v1::TaskCategory>(category));
  }
  r.set_in_answer(q.Bool(row, 12));
  return r;
}


}  // namespace loom::pg
