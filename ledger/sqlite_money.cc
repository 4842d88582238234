// The SQLite ledger's writes that move credits or claim them: settlements, reservations and
// their release, grants and payouts; and the routing statistics written beside them (verdicts
// and outcomes). Each runs inside one group commit through a SqliteTxn (sqlite_txn.h).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "ledger/ledger_rules.h"
#include "ledger/pricing.h"
#include "ledger/sqlite_ledger.h"

namespace loom {
namespace {

// One statement for all of a settlement's records (?1 request, ?2 transaction, ?3 time, then
// kPerRecord per record).
constexpr int kPerRecord = 11;

std::string RecordsInsertSql(size_t records) {
  std::string sql =
      "INSERT INTO contributions(request_id, txn_id, created_at_ms, sub_task_id, attempt, "
      "device_id, provider_id, model, role, token_count, weight, credits_micro, category, "
      "in_answer) VALUES";
  for (size_t i = 0; i < records; ++i) {
    const int b = 4 + kPerRecord * static_cast<int>(i);
    absl::StrAppend(&sql, i ? "," : "", "(?1,?2,?3");
    for (int k = 0; k < kPerRecord; ++k) absl::StrAppend(&sql, ",?", b + k);
    absl::StrAppend(&sql, ")");
  }
  return sql;
}

absl::Status InsertRecords(SqliteTxn& txn, const SettlementRequest& request, int64_t txn_id,
                           int64_t now_ms) {
  if (request.records.empty()) return absl::OkStatus();
  sqlite::Statement rows = txn.Prepare(RecordsInsertSql(request.records.size()));
  rows.Bind(1, request.request_id).Bind(2, txn_id).Bind(3, now_ms);
  for (size_t i = 0; i < request.records.size(); ++i) {
    const v1::ContributionRecord& r = request.records[i];
    const int b = 4 + kPerRecord * static_cast<int>(i);
    rows.Bind(b, r.sub_task_id())
        .Bind(b + 1, int64_t{r.attempt()})
        .Bind(b + 2, r.device_id())
        .Bind(b + 3, r.provider_id())
        .Bind(b + 4, r.model())
        .Bind(b + 5, int64_t{r.role()})
        .Bind(b + 6, r.token_count())
        .BindDouble(b + 7, r.weight())
        .Bind(b + 8, r.credits_micro())
        .Bind(b + 9, int64_t{r.category()})
        .Bind(b + 10, int64_t{r.in_answer()});
  }
  return rows.Run();
}

}  // namespace

absl::StatusOr<Settlement> SqliteLedger::Settle(const SettlementRequest& request) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckSettlement(request));
  absl::StatusOr<Settlement> result = absl::InternalError("not run");
  LOOM_RETURN_IF_ERROR(Write([&](SqliteTxn& txn) {
    result = SettleIn(txn, request);
    return result.status();
  }));
  return result;
}

absl::StatusOr<Settlement> SqliteLedger::SettleIn(SqliteTxn& txn,
                                                  const SettlementRequest& request) const {
  const std::string reference = absl::StrCat("settle:", request.request_id);
  const std::string digest = RecordsDigest(request.records);
  {
    sqlite::Statement existing = txn.Prepare(
        "SELECT id, amount_micro, records_digest FROM transactions WHERE reference = ?1");
    existing.Bind(1, reference);
    LOOM_ASSIGN_OR_RETURN(bool found, existing.Step());
    if (found) {
      if (existing.Text(2) != digest) {
        return absl::FailedPreconditionError(absl::StrCat(
            "request ", request.request_id, " was already settled with different records "
            "(transaction ", existing.Int(0), ", ", existing.Int(1), " micro-credits)"));
      }
      return Settlement{absl::StrCat(existing.Int(0)), existing.Int(1), 0, true};
    }
  }
  int64_t total = 0;
  std::map<std::string, int64_t> by_provider;
  for (const auto& r : request.records) {
    total += r.credits_micro();
    by_provider[ProviderAccount(r.provider_id())] += r.credits_micro();
  }
  const int64_t fee = FeeFor(total);
  const int64_t charge = total + fee;
  LOOM_RETURN_IF_ERROR(txn.EnsureAccount(request.client_account));
  LOOM_ASSIGN_OR_RETURN(int64_t available,
                        txn.Available(request.client_account, request.request_id));
  if (available < charge) {
    return ledger_rules::InsufficientCredits(absl::StrCat(
        "insufficient credits: ", request.client_account, " has ", FormatCredits(available),
        " available and request ", request.request_id, " costs ", FormatCredits(charge)));
  }
  // A provider that is also the client (one person both asking and serving) nets out.
  std::map<std::string, int64_t> netted;
  netted[request.client_account] -= charge;
  for (const auto& [account, amount] : by_provider) {
    LOOM_RETURN_IF_ERROR(txn.EnsureAccount(account));
    netted[account] += amount;
  }
  if (fee > 0) netted["fee"] += fee;
  const Entries entries(netted.begin(), netted.end());
  LOOM_ASSIGN_OR_RETURN(int64_t txn_id, txn.Append("settle", reference, charge, digest, entries));

  const int64_t now_ms = txn.NowMs();
  LOOM_RETURN_IF_ERROR(InsertRecords(txn, request, txn_id, now_ms));
  LOOM_RETURN_IF_ERROR(txn.Prepare("DELETE FROM reservations WHERE request_id = ?1")
                           .Bind(1, request.request_id)
                           .Run());
  // Answers past retention go as settlements pass, at most once a minute (the delete is an
  // index range scan).
  const int64_t retention_ms = absl::ToInt64Milliseconds(options_.answer_retention);
  if (txn.SweepDue(&SqliteConn::last_answer_sweep_ms, now_ms, 60'000)) {
    LOOM_RETURN_IF_ERROR(txn.Prepare("DELETE FROM answers WHERE created_at_ms < ?1")
                             .Bind(1, now_ms - retention_ms)
                             .Run());
  }
  if (!request.answer.empty() && retention_ms > 0) {
    LOOM_RETURN_IF_ERROR(txn.Prepare("INSERT OR REPLACE INTO answers(request_id, account_id, "
                                     "txn_id, response, created_at_ms) VALUES(?1, ?2, ?3, ?4, ?5)")
                             .Bind(1, request.request_id)
                             .Bind(2, request.client_account)
                             .Bind(3, txn_id)
                             .BindBlob(4, request.answer)
                             .Bind(5, now_ms)
                             .Run());
  }
  return Settlement{absl::StrCat(txn_id), charge, fee, false};
}

absl::Status SqliteLedger::Reserve(const std::string& request_id, const std::string& account,
                                   int64_t amount_micro, absl::Duration ttl) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckReservation(request_id, account, amount_micro));
  return Write(
      [&](SqliteTxn& txn) { return ReserveIn(txn, request_id, account, amount_micro, ttl); },
      /*durable=*/false);
}

absl::Status SqliteLedger::ReserveIn(SqliteTxn& txn, const std::string& request_id,
                                     const std::string& account, int64_t amount_micro,
                                     absl::Duration ttl) const {
  const int64_t now_ms = txn.NowMs();
  {
    sqlite::Statement settled = txn.Prepare("SELECT id FROM transactions WHERE reference = ?1");
    settled.Bind(1, absl::StrCat("settle:", request_id));
    LOOM_ASSIGN_OR_RETURN(bool found, settled.Step());
    if (found) {
      return absl::AlreadyExistsError(absl::StrCat("request ", request_id,
                                                   " was already served and settled "
                                                   "(transaction ", settled.Int(0), ")"));
    }
  }
  // Expired reservations count for nothing (every read skips them); deleting them only keeps
  // the table small, and is a scan, so it runs at most once a second.
  if (txn.SweepDue(&SqliteConn::last_expiry_sweep_ms, now_ms, 1000)) {
    LOOM_RETURN_IF_ERROR(
        txn.Prepare("DELETE FROM reservations WHERE expires_at_ms <= ?1").Bind(1, now_ms).Run());
  }
  {
    sqlite::Statement held = txn.Prepare(
        "SELECT account_id FROM reservations WHERE request_id = ?1 AND expires_at_ms > ?2");
    held.Bind(1, request_id).Bind(2, now_ms);
    LOOM_ASSIGN_OR_RETURN(bool found, held.Step());
    if (found) {
      // Running now (here or on another coordinator): the id is claimed, a duplicate waits.
      return absl::AbortedError(
          absl::StrCat("request ", request_id,
                       " is in progress; send it again once it has finished to get its answer"));
    }
  }
  LOOM_RETURN_IF_ERROR(txn.EnsureAccount(account));
  LOOM_ASSIGN_OR_RETURN(int64_t available, txn.Available(account, request_id));
  if (available < amount_micro) {
    return ledger_rules::InsufficientCredits(absl::StrCat(
        "insufficient credits: ", account, " has ", FormatCredits(available),
        " available and the request may cost up to ", FormatCredits(amount_micro)));
  }
  // REPLACE: an expired reservation of this request may not be swept yet.
  return txn.Prepare("INSERT OR REPLACE INTO reservations(request_id, account_id, amount_micro, "
                     "created_at_ms, expires_at_ms, holder) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")
      .Bind(1, request_id)
      .Bind(2, account)
      .Bind(3, amount_micro)
      .Bind(4, now_ms)
      .Bind(5, now_ms + absl::ToInt64Milliseconds(ttl))
      .Bind(6, options_.holder)
      .Run();
}

absl::Status SqliteLedger::Release(const std::string& request_id) {
  absl::Status released = Write(
      [&](SqliteTxn& txn) {
        return txn.Prepare("DELETE FROM reservations WHERE request_id = ?1")
            .Bind(1, request_id)
            .Run();
      },
      /*durable=*/false);
  if (!released.ok() && !options_.read_only) {
    absl::MutexLock lock(&mu_);
    unreleased_.insert(request_id);
  }
  return released;
}

absl::StatusOr<int64_t> SqliteLedger::ReleaseOrphans() {
  int64_t released = 0;
  LOOM_RETURN_IF_ERROR(Write([&](SqliteTxn& txn) -> absl::Status {
    LOOM_RETURN_IF_ERROR(txn.Prepare("DELETE FROM reservations WHERE holder = ?1")
                             .Bind(1, options_.holder)
                             .Run());
    released = txn.Changes();
    return absl::OkStatus();
  }));
  return released;
}

absl::StatusOr<std::string> SqliteLedger::TransferIn(SqliteTxn& txn, const std::string& kind,
                                                     const std::string& from,
                                                     const std::string& to, int64_t amount,
                                                     const std::string& reference) {
  {
    sqlite::Statement existing = txn.PrepareOnce(
        "SELECT t.id FROM transactions t JOIN entries e ON e.txn_id = t.id "
        "WHERE t.reference = ?1 AND t.kind = ?2 AND t.amount_micro = ?3 "
        "AND e.account_id = ?4 AND e.amount_micro = ?3");
    existing.Bind(1, reference).Bind(2, kind).Bind(3, amount).Bind(4, to);
    LOOM_ASSIGN_OR_RETURN(bool found, existing.Step());
    if (found) return absl::StrCat(existing.Int(0));  // the same transfer again: idempotent
    sqlite::Statement taken = txn.PrepareOnce("SELECT id FROM transactions WHERE reference = ?1");
    taken.Bind(1, reference);
    LOOM_ASSIGN_OR_RETURN(bool used, taken.Step());
    if (used) {
      return absl::FailedPreconditionError(absl::StrCat(
          "reference '", reference, "' was already used for a different transaction (",
          taken.Int(0), ")"));
    }
  }
  LOOM_RETURN_IF_ERROR(txn.EnsureAccount(from));
  LOOM_RETURN_IF_ERROR(txn.EnsureAccount(to));
  if (kind == "payout") {
    LOOM_ASSIGN_OR_RETURN(int64_t available, txn.Available(from, ""));
    if (available < amount) {
      return absl::FailedPreconditionError(absl::StrCat(
          "insufficient balance: ", from, " has ", FormatCredits(available), ", payout of ",
          FormatCredits(amount), " refused"));
    }
  }
  LOOM_ASSIGN_OR_RETURN(int64_t id,
                        txn.Append(kind, reference, amount, "", {{from, -amount}, {to, amount}}));
  return absl::StrCat(id);
}

absl::StatusOr<std::string> SqliteLedger::Transfer(const std::string& kind,
                                                   const std::string& from, const std::string& to,
                                                   int64_t amount_micro,
                                                   const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckTransfer(kind, amount_micro, reference));
  absl::StatusOr<std::string> id = absl::InternalError("not run");
  LOOM_RETURN_IF_ERROR(Write([&](SqliteTxn& txn) {
    id = TransferIn(txn, kind, from, to, amount_micro, absl::StrCat(kind, ":", reference));
    return id.status();
  }));
  return id;
}

absl::StatusOr<std::string> SqliteLedger::Grant(const std::string& account, int64_t amount_micro,
                                                const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckGrantAccount(account));
  return Transfer("grant", "mint", account, amount_micro, reference);
}

absl::StatusOr<std::string> SqliteLedger::Payout(const std::string& provider_id,
                                                 int64_t amount_micro,
                                                 const std::string& reference) {
  if (provider_id.empty()) return absl::InvalidArgumentError("payout: empty provider id");
  return Transfer("payout", ProviderAccount(provider_id), "payout", amount_micro, reference);
}

// ---- Feedback and outcomes: routing statistics, outside the hash chain ----

absl::StatusOr<std::vector<OutcomeDelta>> SqliteLedger::RecordFeedback(
    const FeedbackVerdict& verdict) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckVerdict(verdict));
  absl::StatusOr<std::vector<OutcomeDelta>> result = absl::InternalError("not run");
  LOOM_RETURN_IF_ERROR(Write([&](SqliteTxn& txn) {
    result = RecordFeedbackIn(txn, verdict);
    return result.status();
  }));
  return result;
}

absl::StatusOr<std::vector<OutcomeDelta>> SqliteLedger::RecordFeedbackIn(
    SqliteTxn& txn, const FeedbackVerdict& verdict) {
  // The request must have been settled and charged to this client. Another client's request
  // is "not found" for this one, as an unknown id is: a key does not learn which ids exist.
  {
    sqlite::Statement owner = txn.Prepare(
        "SELECT 1 FROM transactions t JOIN entries e ON e.txn_id = t.id "
        "WHERE t.reference = ?1 AND e.account_id = ?2");
    owner.Bind(1, absl::StrCat("settle:", verdict.request_id)).Bind(2, verdict.client_account);
    LOOM_ASSIGN_OR_RETURN(bool found, owner.Step());
    if (!found) {
      return absl::NotFoundError(absl::StrCat("no settled request ", verdict.request_id,
                                              " of ", verdict.client_account));
    }
  }
  {
    sqlite::Statement earlier =
        txn.Prepare("SELECT rating FROM feedback WHERE request_id = ?1 AND account_id = ?2");
    earlier.Bind(1, verdict.request_id).Bind(2, verdict.client_account);
    LOOM_ASSIGN_OR_RETURN(bool found, earlier.Step());
    if (found) {
      return absl::AlreadyExistsError(absl::StrCat("request ", verdict.request_id,
                                                   " was already rated ", earlier.Text(0)));
    }
  }
  // The parts of the answer: each sub-task's last attempt among the records that reached it.
  std::vector<OutcomeDelta> parts;
  {
    sqlite::Statement q = txn.Prepare(
        "SELECT sub_task_id, model, category FROM contributions c WHERE request_id = ?1 "
        "AND in_answer = 1 AND category != 0 AND (?2 = '' OR sub_task_id = ?2) AND "
        "attempt = (SELECT MAX(attempt) FROM contributions d WHERE d.request_id = "
        "c.request_id AND d.sub_task_id = c.sub_task_id AND d.in_answer = 1) "
        "ORDER BY sub_task_id");
    q.Bind(1, verdict.request_id).Bind(2, verdict.sub_task_id);
    LOOM_RETURN_IF_ERROR(sqlite::ForEachRow(q, [&](sqlite::Statement& r) {
      const int64_t category = r.Int(2);
      if (!v1::TaskCategory_IsValid(static_cast<int>(category))) return;
      parts.push_back({r.Text(1), static_cast<v1::TaskCategory>(category), 0, 0});
    }));
  }
  if (!verdict.sub_task_id.empty() && parts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("request ", verdict.request_id,
                                                   " has no sub-task ", verdict.sub_task_id,
                                                   " in its answer"));
  }
  // The whole answer is shared equally by its parts; a part named alone takes all of it.
  ledger_rules::ShareVerdict(verdict.good, &parts);
  LOOM_RETURN_IF_ERROR(txn.Prepare("INSERT INTO feedback(request_id, account_id, rating, "
                                   "sub_task_id, created_at_ms) VALUES(?1, ?2, ?3, ?4, ?5)")
                           .Bind(1, verdict.request_id)
                           .Bind(2, verdict.client_account)
                           .Bind(3, verdict.good ? "good" : "bad")
                           .Bind(4, verdict.sub_task_id)
                           .Bind(5, txn.NowMs())
                           .Run());
  LOOM_RETURN_IF_ERROR(AddOutcomesIn(txn, parts));
  return parts;
}

absl::Status SqliteLedger::AddOutcomes(const std::vector<OutcomeDelta>& deltas) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckOutcomes(deltas));
  if (deltas.empty()) return absl::OkStatus();
  return Write([&](SqliteTxn& txn) { return AddOutcomesIn(txn, deltas); }, /*durable=*/false);
}

absl::Status SqliteLedger::AddOutcomesIn(SqliteTxn& txn, const std::vector<OutcomeDelta>& deltas) {
  const int64_t now_ms = txn.NowMs();
  for (const OutcomeDelta& d : deltas) {
    LOOM_RETURN_IF_ERROR(
        txn.Prepare("INSERT INTO outcomes(model, category, good, bad, updated_at_ms) "
                    "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(model, category) DO UPDATE SET "
                    "good = good + excluded.good, bad = bad + excluded.bad, "
                    "updated_at_ms = excluded.updated_at_ms")
            .Bind(1, d.model)
            .Bind(2, int64_t{d.category})
            .BindDouble(3, d.good)
            .BindDouble(4, d.bad)
            .Bind(5, now_ms)
            .Run());
  }
  return absl::OkStatus();
}

}  // namespace loom
