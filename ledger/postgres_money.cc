// File: ledger/postgres_money.cc
// The PostgreSQL ledger's writes that move or claim credits: reservations, settlements, grants and payouts; and the routing statistics beside them (verdicts, outcomes).
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

using pg::AddOutcomesIn;
using pg::Append;
using pg::AvailableOf;
using pg::EnsureAccount;
using pg::HasBalanceRow;
using pg::Lock;
using pg::Param;
using pg::Result;
using pg::kDerivedBalance;

// ---- Money ----

int64_t PostgresLedger::FeeFor(int64_t credits_micro) const {
  return ledger_rules::Fee(options_.fee_bps, credits_micro);
}

absl::Status PostgresLedger::Reserve(const std::string& request_id, const std::string& account,
                                     int64_t amount_micro, absl::Duration ttl) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckReservation(request_id, account, amount_micro));
  // On every request's path: a client already known costs no account insert.
  const bool known = Known(account);
  absl::Status reserved = Transact([&](Conn& c) -> absl::Status {
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    if (!known) LOOM_RETURN_IF_ERROR(EnsureAccount(c, account, now_ms));
    // The client's row first: every reservation and settlement of this client is serialised
    // from here, on every coordinator. Under the lock, in one round trip with BEGIN: what is
    // available, whether the request was settled already, whether it is running.
    Lock(c, account);
    LOOM_ASSIGN_OR_RETURN(
        Result q,
        c.Exec("SELECT (SELECT balance_micro FROM balances WHERE account_id = $1), "
               "(SELECT COALESCE(SUM(amount_micro), 0) FROM reservations WHERE account_id = $1 AND "
               "expires_at_ms > $2 AND request_id <> $3), "
               "(SELECT id FROM transactions WHERE reference = $4), "
               "(SELECT COUNT(*) FROM reservations WHERE request_id = $3 AND expires_at_ms > $2)",
               {account, now_ms, request_id, absl::StrCat("settle:", request_id)}));
    const int64_t available = q.Int(0, 0) - q.Int(0, 1);
    if (const int64_t settled = q.Int(0, 2); settled != 0) {
      return absl::AlreadyExistsError(absl::StrCat("request ", request_id,
                                                   " was already served and settled "
                                                   "(transaction ", settled, ")"));
    }
    if (q.Int(0, 3) > 0) {
      return absl::AbortedError(
          absl::StrCat("request ", request_id,
                       " is in progress; send it again once it has finished to get its answer"));
    }
    if (available < amount_micro) {
      return ledger_rules::InsufficientCredits(absl::StrCat(
          "insufficient credits: ", account, " has ", FormatCredits(available),
          " available and the request may cost up to ", FormatCredits(amount_micro)));
    }
    return c.Commit({{"INSERT INTO reservations(request_id, account_id, amount_micro, "
                      "created_at_ms, expires_at_ms, holder) VALUES($1, $2, $3, $4, $5, $6) "
                      "ON CONFLICT (request_id) DO UPDATE SET account_id = excluded.account_id, "
                      "amount_micro = excluded.amount_micro, "
                      "created_at_ms = excluded.created_at_ms, "
                      "expires_at_ms = excluded.expires_at_ms, holder = excluded.holder",
                      {request_id, account, amount_micro, now_ms,
                       now_ms + absl::ToInt64Milliseconds(ttl), options_.holder}}});
  });
  if (reserved.ok()) Remember({account});
  return reserved;
}

absl::Status PostgresLedger::Release(const std::string& request_id) {
  return WithConn([&](Conn& c) {
    return c.Exec("DELETE FROM reservations WHERE request_id = $1", {request_id}).status();
  });
}

absl::StatusOr<int64_t> PostgresLedger::ReleaseOrphans() {
  int64_t released = 0;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result r,
                          c.Exec("DELETE FROM reservations WHERE holder = $1", {options_.holder}));
    released = r.affected();
    return absl::OkStatus();
  }));
  return released;
}

absl::StatusOr<int64_t> PostgresLedger::Available(const std::string& account) {
  int64_t available = 0;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(available, AvailableOf(c, account, "", absl::ToUnixMillis(clock_->Now()),
                                                 false));
    return absl::OkStatus();
  }));
  return available;
}

absl::StatusOr<int64_t> PostgresLedger::Balance(const std::string& account) {
  int64_t balance = 0;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(
        balance,
        HasBalanceRow(account)
            ? c.Int("SELECT balance_micro FROM balances WHERE account_id = $1", {account})
            : c.Int(kDerivedBalance, {account}));
    return absl::OkStatus();
  }));
  return balance;
}

namespace {

// One multi-row INSERT of a settlement's contribution records.
pg::Conn::Statement ContributionsInsert(const SettlementRequest& request, int64_t txn_id,
                                        int64_t now_ms) {
  std::string sql =
      "INSERT INTO contributions(request_id, txn_id, created_at_ms, sub_task_id, attempt, "
      "device_id, provider_id, model, role, token_count, weight, credits_micro, category, "
      "in_answer) VALUES";
  std::vector<Param> params = {request.request_id, txn_id, now_ms};
  constexpr int kPerRecord = 11;
  for (size_t i = 0; i < request.records.size(); ++i) {
    const int b = 4 + kPerRecord * static_cast<int>(i);
    absl::StrAppend(&sql, i ? "," : "", "($1, $2, $3");
    for (int k = 0; k < kPerRecord; ++k) absl::StrAppend(&sql, ", $", b + k);
    absl::StrAppend(&sql, ")");
    const v1::ContributionRecord& r = request.records[i];
    for (Param p : {Param(r.sub_task_id()), Param(int64_t{r.attempt()}), Param(r.device_id()),
                    Param(r.provider_id()), Param(r.model()), Param(int64_t{r.role()}),
                    Param(r.token_count()), Param(r.weight()), Param(r.credits_micro()),
                    Param(int64_t{r.category()}), Param(r.in_answer() ? "true" : "false")}) {
      params.push_back(std::move(p));
    }
  }
  return {sql, params};
}

}  // namespace

absl::StatusOr<Settlement> PostgresLedger::Settle(const SettlementRequest& request) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckSettlement(request));
  const std::string reference = absl::StrCat("settle:", request.request_id);
  const std::string digest = RecordsDigest(request.records);
  int64_t total = 0;
  std::map<std::string, int64_t> by_provider;
  for (const auto& r : request.records) {
    total += r.credits_micro();
    by_provider[ProviderAccount(r.provider_id())] += r.credits_micro();
  }
  std::vector<std::string> accounts = {request.client_account};
  for (const auto& [account, amount] : by_provider) accounts.push_back(account);
  Settlement out;
  LOOM_RETURN_IF_ERROR(Transact([&](Conn& c) -> absl::Status {
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    for (const std::string& account : accounts) {
      if (!Known(account)) LOOM_RETURN_IF_ERROR(EnsureAccount(c, account, now_ms));
    }
    // The client's row first (the lock order); under it, its balance, its live holds and
    // whether the request was settled already. With BEGIN: one round trip.
    Lock(c, request.client_account);
    LOOM_ASSIGN_OR_RETURN(
        Result held,
        c.Exec("SELECT b.balance_micro, (SELECT COALESCE(SUM(r.amount_micro), 0) FROM reservations "
               "r WHERE r.account_id = $1 AND r.expires_at_ms > $2 AND r.request_id <> $3), t.id, "
               "t.amount_micro, t.records_digest FROM balances b LEFT JOIN transactions t ON "
               "t.reference = $4 WHERE b.account_id = $1",
               {request.client_account, now_ms, request.request_id, reference}));
    if (held.rows() != 1) return absl::InternalError("ledger: the client's balance row is missing");
    const int64_t available = held.Int(0, 0) - held.Int(0, 1);
    if (!held.Text(0, 2).empty()) {
      if (held.Text(0, 4) != digest) {
        return absl::FailedPreconditionError(absl::StrCat(
            "request ", request.request_id, " was already settled with different records "
            "(transaction ", held.Text(0, 2), ", ", held.Text(0, 3), " micro-credits)"));
      }
      out = Settlement{held.Text(0, 2), held.Int(0, 3), 0, true};
      return absl::OkStatus();
    }
    const int64_t fee = FeeFor(total);
    const int64_t charge = total + fee;
    if (available < charge) {
      return ledger_rules::InsufficientCredits(absl::StrCat(
          "insufficient credits: ", request.client_account, " has ", FormatCredits(available),
          " available and request ", request.request_id, " costs ", FormatCredits(charge)));
    }
    Entries entries = {{request.client_account, -charge}};
    for (const auto& [account, amount] : by_provider) entries.emplace_back(account, amount);
    if (fee > 0) entries.emplace_back("fee", fee);
    std::vector<Conn::Statement> writes;
    LOOM_ASSIGN_OR_RETURN(int64_t id, Append(c, options_, now_ms, "settle", reference, charge,
                                             digest, entries, &writes));
    if (!request.records.empty()) writes.push_back(ContributionsInsert(request, id, now_ms));
    writes.push_back({"DELETE FROM reservations WHERE request_id = $1", {request.request_id}});
    const int64_t retention_ms = absl::ToInt64Milliseconds(options_.answer_retention);
    if (!request.answer.empty() && retention_ms > 0) {
      writes.push_back({"INSERT INTO answers(request_id, account_id, txn_id, response, created_at_ms) "
                        "VALUES($1, $2, $3, $4, $5) ON CONFLICT (request_id) DO UPDATE SET "
                        "account_id = excluded.account_id, txn_id = excluded.txn_id, "
                        "response = excluded.response, created_at_ms = excluded.created_at_ms",
                        {request.request_id, request.client_account, id,
                         Param::Bytes(request.answer), now_ms}});
    }
    LOOM_RETURN_IF_ERROR(c.Commit(std::move(writes)));
    out = Settlement{absl::StrCat(id), charge, fee, false};
    return absl::OkStatus();
  }));
  Remember(accounts);
  PruneAnswers();
  return out;
}

void PostgresLedger::PruneAnswers() {
  // Answers past retention go as settlements pass, at most once a minute (an index range
  // delete; outside the settlement, which must not wait on it).
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  int64_t last = last_prune_ms_.load();
  if (now_ms - last >= 60'000 && last_prune_ms_.compare_exchange_strong(last, now_ms)) {
    (void)WithConn([&](Conn& c) {
      return c.Exec("DELETE FROM answers WHERE created_at_ms < $1",
                    {absl::ToUnixMillis(clock_->Now()) -
                     absl::ToInt64Milliseconds(options_.answer_retention)})
          .status();
    });
  }
}

absl::StatusOr<std::string> PostgresLedger::Transfer(const std::string& kind, const std::string& from,
                                                     const std::string& to, int64_t amount,
                                                     const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckTransfer(kind, amount, reference));
  const std::string ref = absl::StrCat(kind, ":", reference);
  std::string id;
  LOOM_RETURN_IF_ERROR(Transact([&](Conn& c) -> absl::Status {
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    LOOM_RETURN_IF_ERROR(EnsureAccount(c, from, now_ms));
    LOOM_RETURN_IF_ERROR(EnsureAccount(c, to, now_ms));
    // The paying account's row first (the lock order).
    LOOM_ASSIGN_OR_RETURN(int64_t available, AvailableOf(c, from, "", now_ms, true));
    LOOM_ASSIGN_OR_RETURN(Result same,
                          c.Exec("SELECT t.id FROM transactions t JOIN entries e ON e.txn_id = t.id "
                                 "WHERE t.reference = $1 AND t.kind = $2 AND t.amount_micro = $3 "
                                 "AND e.account_id = $4 AND e.amount_micro = $3",
                                 {ref, kind, amount, to}));
    if (same.rows() > 0) {
      id = same.Text(0, 0);  // the same transfer again: idempotent
      return absl::OkStatus();
    }
    LOOM_ASSIGN_OR_RETURN(int64_t taken,
                          c.Int("SELECT id FROM transactions WHERE reference = $1", {ref}));
    if (taken != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "reference '", ref, "' was already used for a different transaction (", taken, ")"));
    }
    if (kind == "payout" && available < amount) {
      return absl::FailedPreconditionError(absl::StrCat(
          "insufficient balance: ", from, " has ", FormatCredits(available), ", payout of ",
          FormatCredits(amount), " refused"));
    }
    std::vector<Conn::Statement> writes;
    LOOM_ASSIGN_OR_RETURN(int64_t appended, Append(c, options_, now_ms, kind, ref, amount, "",
                                                   {{from, -amount}, {to, amount}}, &writes));
    LOOM_RETURN_IF_ERROR(c.Commit(std::move(writes)));
    id = absl::StrCat(appended);
    return absl::OkStatus();
  }));
  return id;
}

absl::StatusOr<std::string> PostgresLedger::Grant(const std::string& account, int64_t amount_micro,
                                                  const std::string& reference) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckGrantAccount(account));
  return Transfer("grant", "mint", account, amount_micro, reference);
}

absl::StatusOr<std::string> PostgresLedger::Payout(const std::string& provider_id,
                                                   int64_t amount_micro,
                                                   const std::string& reference) {
  if (provider_id.empty()) return absl::InvalidArgumentError("payout: empty provider id");
  return Transfer("payout", ProviderAccount(provider_id), "payout", amount_micro, reference);
}


// ---- Feedback and outcomes ----

absl::StatusOr<std::vector<OutcomeDelta>> PostgresLedger::RecordFeedback(
    const FeedbackVerdict& verdict) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckVerdict(verdict));
  std::vector<OutcomeDelta> parts;
  LOOM_RETURN_IF_ERROR(Transact([&](Conn& c) -> absl::Status {
    parts.clear();
    LOOM_ASSIGN_OR_RETURN(int64_t owned,
                          c.Int("SELECT COUNT(*) FROM transactions t JOIN entries e ON e.txn_id = "
                                "t.id WHERE t.reference = $1 AND e.account_id = $2",
                                {absl::StrCat("settle:", verdict.request_id), verdict.client_account}));
    if (owned == 0) {
      return absl::NotFoundError(absl::StrCat("no settled request ", verdict.request_id, " of ",
                                              verdict.client_account));
    }
    LOOM_ASSIGN_OR_RETURN(Result earlier,
                          c.Exec("SELECT rating FROM feedback WHERE request_id = $1 AND "
                                 "account_id = $2",
                                 {verdict.request_id, verdict.client_account}));
    if (earlier.rows() > 0) {
      return absl::AlreadyExistsError(absl::StrCat("request ", verdict.request_id,
                                                   " was already rated ", earlier.Text(0, 0)));
    }
    LOOM_ASSIGN_OR_RETURN(
        Result q,
        c.Exec("SELECT sub_task_id, model, category FROM contributions c WHERE request_id = $1 AND "
               "in_answer AND category <> 0 AND ($2::text = '' OR sub_task_id = $2) AND attempt = "
               "(SELECT MAX(attempt) FROM contributions d WHERE d.request_id = c.request_id AND "
               "d.sub_task_id = c.sub_task_id AND d.in_answer) ORDER BY sub_task_id",
               {verdict.request_id, verdict.sub_task_id}));
    for (int i = 0; i < q.rows(); ++i) {
      const int64_t category = q.Int(i, 2);
      if (!v1::TaskCategory_IsValid(static_cast<int>(category))) continue;
      parts.push_back({q.Text(i, 1), static_cast<v1::TaskCategory>(category), 0, 0});
    }
    if (!verdict.sub_task_id.empty() && parts.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("request ", verdict.request_id,
                                                     " has no sub-task ", verdict.sub_task_id,
                                                     " in its answer"));
    }
    ledger_rules::ShareVerdict(verdict.good, &parts);
    const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
    LOOM_RETURN_IF_ERROR(c.Exec("INSERT INTO feedback(request_id, account_id, rating, sub_task_id, "
                                "created_at_ms) VALUES($1, $2, $3, $4, $5)",
                                {verdict.request_id, verdict.client_account,
                                 verdict.good ? "good" : "bad", verdict.sub_task_id, now_ms})
                             .status());
    return AddOutcomesIn(c, parts, now_ms);
  }));
  return parts;
}

absl::Status PostgresLedger::AddOutcomes(const std::vector<OutcomeDelta>& deltas) {
  LOOM_RETURN_IF_ERROR(ledger_rules::CheckOutcomes(deltas));
  if (deltas.empty()) return absl::OkStatus();
  return Transact([&](Conn& c) -> absl::Status {
    return AddOutcomesIn(c, deltas, absl::ToUnixMillis(clock_->Now()));
  });
}

absl::StatusOr<std::vector<OutcomeDelta>> PostgresLedger::Outcomes() {
  std::vector<OutcomeDelta> out;
  LOOM_RETURN_IF_ERROR(WithConn([&](Conn& c) -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(Result q, c.Exec("SELECT model, category, good, bad FROM outcomes "
                                           "ORDER BY model, category"));
    for (int i = 0; i < q.rows(); ++i) {
      const int64_t category = q.Int(i, 1);
      if (!v1::TaskCategory_IsValid(static_cast<int>(category))) continue;
      out.push_back({q.Text(i, 0), static_cast<v1::TaskCategory>(category), q.Double(i, 2),
                     q.Double(i, 3)});
    }
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace loom
