// File: ledger/postgres_audit.cc
// The PostgreSQL ledger's audit (every chain, entries, records, balances) and its import of another ledger's copy (loom-ledger migrate).
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <libpq-fe.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_hash.h"
#include "ledger/ledger_rules.h"
#include "ledger/postgres_conn.h"
#include "ledger/pricing.h"

namespace loom {

using pg::AddOutcomesIn;
using pg::ChainCanonical;
using pg::HasBalanceRow;
using pg::Param;
using pg::RecordFromRow;
using pg::Result;
using pg::kRecordColumns;

namespace {

// What is wrong with settlement `id` (its records against its digest, and their credits plus
// the fee against its amount), or "" when nothing is.
absl::StatusOr<std::string> SettlementProblem(pg::Conn& c, int64_t id, const std::string& digest,
                                              int64_t amount, const Entries& entries) {
  LOOM_ASSIGN_OR_RETURN(
      Result recs,
      c.Exec(absl::StrCat("SELECT ", kRecordColumns, " FROM contributions WHERE txn_id = $1"),
             {id}));
  std::vector<v1::ContributionRecord> records;
  int64_t credits = 0;
  for (int r = 0; r < recs.rows(); ++r) {
    records.push_back(RecordFromRow(recs, r));
    credits += records.back().credits_micro();
  }
  if (RecordsDigest(records) != digest) {
    return absl::StrCat("the records of settlement ", id, " do not match its digest");
  }
  int64_t fee = 0;
  for (const auto& [account, value] : entries) {
    if (account == "fee") fee = value;
  }
  if (credits + fee != amount) {
    return absl::StrCat("records credit ", credits, " + fee ", fee, " but the settlement charged ",
                        amount);
  }
  return std::string();
}

// The first account whose balance row differs from the sum of its entries, or "".
absl::StatusOr<std::string> BalanceProblem(pg::Conn& c) {
  LOOM_ASSIGN_OR_RETURN(
      Result balances,
      c.Exec("SELECT b.account_id, b.balance_micro, COALESCE((SELECT SUM(e.amount_micro) FROM "
             "entries e WHERE e.account_id = b.account_id), 0) FROM balances b ORDER BY 1"));
  for (int i = 0; i < balances.rows(); ++i) {
    if (balances.Int(i, 1) != balances.Int(i, 2)) {
      return absl::StrCat("balance of ", balances.Text(i, 0), " is ", balances.Int(i, 1),
                          " but its entries sum to ", balances.Int(i, 2));
    }
  }
  return std::string();
}

}  // namespace

absl::StatusOr<VerifyReport> PostgresLedger::Verify() {
  VerifyReport report;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    auto fail = [&](int64_t id, std::string problem) {
      report.ok = false;
      report.first_bad_transaction = id;
      report.problem = std::move(problem);
      return absl::OkStatus();
    };
    // One snapshot for the whole audit.
    LOOM_RETURN_IF_ERROR(c.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
    auto end = absl::MakeCleanup([&] { (void)c.Exec("COMMIT"); });
    LOOM_ASSIGN_OR_RETURN(Result chains, c.Exec("SELECT chain, seq, head FROM chains ORDER BY chain"));
    std::map<std::string, std::pair<int64_t, std::string>> heads;
    for (int i = 0; i < chains.rows(); ++i) {
      heads[chains.Text(i, 0)] = {chains.Int(i, 1), chains.Text(i, 2)};
    }
    LOOM_ASSIGN_OR_RETURN(
        Result txns,
        c.Exec("SELECT id, kind, reference, amount_micro, created_at_ms, records_digest, chain, "
               "chain_seq, prev_hash, hash FROM transactions ORDER BY chain, chain_seq"));
    LOOM_ASSIGN_OR_RETURN(Result all_entries,
                          c.Exec("SELECT txn_id, account_id, amount_micro FROM entries"));
    std::map<int64_t, Entries> entries;
    for (int i = 0; i < all_entries.rows(); ++i) {
      entries[all_entries.Int(i, 0)].emplace_back(all_entries.Text(i, 1), all_entries.Int(i, 2));
    }
    std::string chain, prev;
    int64_t expected_seq = 0;
    for (int i = 0; i < txns.rows(); ++i) {
      const int64_t id = txns.Int(i, 0);
      ++report.transactions;
      if (txns.Text(i, 6) != chain) {
        if (!chain.empty() && (heads[chain].first != expected_seq || heads[chain].second != prev)) {
          return fail(id, absl::StrCat("chain ", chain, " ends at ", expected_seq,
                                       " but its head says ", heads[chain].first));
        }
        chain = txns.Text(i, 6);
        prev.clear();
        expected_seq = 0;
      }
      ++expected_seq;
      if (txns.Int(i, 7) != expected_seq) {
        return fail(id, absl::StrCat("chain ", chain, " skips from ", expected_seq - 1, " to ",
                                     txns.Int(i, 7), " (a transaction was deleted)"));
      }
      if (txns.Text(i, 8) != prev) {
        return fail(id, absl::StrCat("transaction ", id, " does not link to the one before it in ",
                                     chain));
      }
      const Entries& e = entries[id];
      int64_t sum = 0;
      for (const auto& [account, amount] : e) sum += amount;
      if (sum != 0) return fail(id, absl::StrCat("entries of transaction ", id, " sum to ", sum));
      const std::string hash = Sha256Hex(ChainCanonical(
          chain, expected_seq,
          TxnCanonical(kChainVersion, prev, id, txns.Text(i, 1), txns.Text(i, 2), txns.Int(i, 3),
                       txns.Int(i, 4), txns.Text(i, 5), e)));
      if (hash != txns.Text(i, 9)) {
        return fail(id, absl::StrCat("transaction ", id, " does not match its hash (edited)"));
      }
      if (txns.Text(i, 1) == "settle") {
        LOOM_ASSIGN_OR_RETURN(std::string problem,
                              SettlementProblem(c, id, txns.Text(i, 5), txns.Int(i, 3), e));
        if (!problem.empty()) return fail(id, std::move(problem));
      }
      prev = txns.Text(i, 9);
    }
    if (!chain.empty() && (heads[chain].first != expected_seq || heads[chain].second != prev)) {
      return fail(0, absl::StrCat("chain ", chain, " ends at ", expected_seq,
                                  " but its head says ", heads[chain].first));
    }
    LOOM_ASSIGN_OR_RETURN(std::string problem, BalanceProblem(c));
    if (!problem.empty()) return fail(0, std::move(problem));
    return absl::OkStatus();
  }));
  return report;
}


// ---- Import (loom-ledger migrate) ----

namespace {

// The source's history, in its order, as one chain "migrated/0"; returns each account's balance
// from the entries and the transaction id of each reference.
struct ImportedHistory {
  std::map<std::string, int64_t> balances;
  std::map<std::string, int64_t> txn_of_reference;
};
absl::StatusOr<ImportedHistory> ImportHistory(pg::Conn& c, const LedgerCopy& copy) {
  const std::string chain = "migrated/0";
  ImportedHistory out;
  std::string prev;
  int64_t seq = 0, max_id = 0;
  for (const auto& t : copy.transactions) {
    ++seq;
    max_id = std::max(max_id, t.id);
    out.txn_of_reference[t.reference] = t.id;
    const std::string hash = Sha256Hex(ChainCanonical(
        chain, seq,
        TxnCanonical(kChainVersion, prev, t.id, t.kind, t.reference, t.amount_micro,
                     t.created_ms, t.records_digest, t.entries)));
    LOOM_RETURN_IF_ERROR(
        c.Exec("INSERT INTO transactions(id, kind, reference, amount_micro, created_at_ms, "
               "records_digest, chain, chain_seq, prev_hash, hash) "
               "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
               {t.id, t.kind, t.reference, t.amount_micro, t.created_ms, t.records_digest, chain,
                seq, prev, hash})
            .status());
    for (const auto& [account, amount] : t.entries) {
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO entries(txn_id, account_id, amount_micro) "
                                  "VALUES($1, $2, $3)",
                                  {t.id, account, amount})
                               .status());
      out.balances[account] += amount;
    }
    prev = hash;
  }
  if (seq > 0) {
    LOOM_RETURN_IF_ERROR(
        c.Exec("INSERT INTO chains(chain, seq, head) VALUES($1, $2, $3)", {chain, seq, prev})
            .status());
    LOOM_RETURN_IF_ERROR(
        c.Exec("SELECT setval(pg_get_serial_sequence('transactions', 'id'), $1)", {max_id}).status());
  }
  return out;
}

// Each contribution record, under the settlement of its request.
absl::Status ImportRecords(pg::Conn& c, const LedgerCopy& copy,
                           const std::map<std::string, int64_t>& txn_of_reference) {
  for (const v1::ContributionRecord& r : copy.records) {
    auto txn = txn_of_reference.find(absl::StrCat("settle:", r.request_id()));
    if (txn == txn_of_reference.end()) {
      return absl::DataLossError(absl::StrCat("record of request ", r.request_id(),
                                              " has no settlement in the source"));
    }
    LOOM_RETURN_IF_ERROR(
        c.Exec("INSERT INTO contributions(request_id, sub_task_id, attempt, txn_id, device_id, "
               "provider_id, model, role, token_count, weight, credits_micro, created_at_ms, "
               "category, in_answer) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
               "$13, $14)",
               {r.request_id(), r.sub_task_id(), int64_t{r.attempt()}, txn->second, r.device_id(),
                r.provider_id(), r.model(), int64_t{r.role()}, r.token_count(), r.weight(),
                r.credits_micro(), r.created_unix_ms(), int64_t{r.category()},
                r.in_answer() ? "true" : "false"})
            .status());
  }
  return absl::OkStatus();
}

// Stored answers, API keys and feedback verdicts, as they are.
absl::Status ImportSideTables(pg::Conn& c, const LedgerCopy& copy) {
  for (const auto& a : copy.answers) {
    LOOM_RETURN_IF_ERROR(
        c.Exec("INSERT INTO answers(request_id, account_id, txn_id, response, created_at_ms) "
               "VALUES($1, $2, $3, $4, $5)",
               {a.request_id, a.account, a.txn_id, Param::Bytes(a.response), a.created_ms})
            .status());
  }
  for (const auto& k : copy.keys) {
    LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO api_keys(id, client_account, secret_sha256, "
                                "created_at_ms, revoked_at_ms) VALUES($1, $2, $3, $4, $5)",
                                {k.id, k.account, k.secret_sha256, k.created_ms, k.revoked_ms})
                             .status());
  }
  for (const auto& v : copy.verdicts) {
    LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO feedback(request_id, account_id, rating, sub_task_id, "
                                "created_at_ms) VALUES($1, $2, $3, $4, $5)",
                                {v.request_id, v.account, v.rating, v.sub_task_id, v.created_ms})
                             .status());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PostgresLedger::Import(const LedgerCopy& copy) {
  return Transact([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(int64_t existing, c.Int("SELECT COUNT(*) FROM transactions"));
    if (existing > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the target ledger already holds ", existing, " transactions; migrate into an empty one"));
    }
    for (const auto& a : copy.accounts) {
      LOOM_RETURN_IF_ERROR(ledger_rules::CheckAccountId(a.id));
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO accounts(id, kind, created_at_ms) VALUES($1, $2, $3) "
                                  "ON CONFLICT (id) DO NOTHING",
                                  {a.id, a.kind, a.created_ms})
                               .status());
    }
    LOOM_ASSIGN_OR_RETURN(ImportedHistory history, ImportHistory(c, copy));
    for (const auto& a : copy.accounts) {
      if (!HasBalanceRow(a.id)) continue;
      LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO balances(account_id, balance_micro) VALUES($1, $2) "
                                  "ON CONFLICT (account_id) DO UPDATE SET balance_micro = "
                                  "excluded.balance_micro",
                                  {a.id, history.balances[a.id]})
                               .status());
    }
    LOOM_RETURN_IF_ERROR(ImportRecords(c, copy, history.txn_of_reference));
    LOOM_RETURN_IF_ERROR(ImportSideTables(c, copy));
    return AddOutcomesIn(c, copy.outcomes, absl::ToUnixMillis(clock_->Now()));
  });
}

}  // namespace loom
