// The SQLite ledger's audit: SQLite's own integrity and foreign-key checks, then the hash
// chain, each transaction's entries and its records, and every balance against its entries.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "ledger/sqlite_ledger.h"

namespace loom {

absl::StatusOr<VerifyReport> SqliteLedger::Verify() {
  absl::MutexLock lock(&mu_);
  VerifyReport report;
  auto fail = [&](int64_t txn, const std::string& problem) {
    report.ok = false;
    report.first_bad_transaction = txn;
    report.problem = problem;
    return report;
  };
  {
    sqlite::Statement q = PreparedOnce("PRAGMA integrity_check");
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (!row || q.Text(0) != "ok") {
      return fail(0, absl::StrCat("integrity_check: ", row ? q.Text(0) : ""));
    }
  }
  {
    sqlite::Statement q = PreparedOnce("PRAGMA foreign_key_check");
    LOOM_ASSIGN_OR_RETURN(bool row, q.Step());
    if (row) return fail(0, absl::StrCat("foreign_key_check: a row of ", q.Text(0), " points nowhere"));
  }
  sqlite::Statement all = PreparedOnce(
      "SELECT id, kind, reference, amount_micro, created_at_ms, records_digest, "
      "prev_hash, hash, chain_version FROM transactions ORDER BY id");
  std::string prev;
  while (true) {
    LOOM_ASSIGN_OR_RETURN(bool row, all.Step());
    if (!row) break;
    ++report.transactions;
    const int64_t id = all.Int(0);
    const std::string kind = all.Text(1);
    const int64_t amount = all.Int(3);
    LOOM_ASSIGN_OR_RETURN(Entries entries, sqlite::LoadEntries(conn_.db, id));
    if (entries.empty()) return fail(id, "transaction has no entries");
    int64_t sum = 0;
    for (const auto& [account, value] : entries) sum += value;
    if (sum != 0) return fail(id, absl::StrCat("entries sum to ", sum, ", not zero"));
    if (all.Text(6) != prev) {
      return fail(id, "previous-hash link broken (a transaction before it was removed or changed)");
    }
    const int version = static_cast<int>(all.Int(8));
    if (version != 1 && version != kChainVersion) {
      return fail(id, absl::StrCat("unknown chain version ", version));
    }
    const std::string expected = Sha256Hex(TxnCanonical(version, prev, id, kind, all.Text(2),
                                                        amount, all.Int(4), all.Text(5), entries));
    if (all.Text(7) != expected) return fail(id, "hash does not match its contents (edited)");
    prev = expected;
    if (kind != "settle") continue;
    // A settlement's reference is "settle:" + its request id, the records' key prefix.
    sqlite::Statement c = PreparedOnce(
        "SELECT COALESCE(SUM(credits_micro), 0), COUNT(*) FROM contributions "
        "WHERE request_id = ?2 AND txn_id = ?1");
    const std::string reference = all.Text(2);
    c.Bind(1, id).Bind(2, absl::StripPrefix(reference, "settle:"));
    LOOM_ASSIGN_OR_RETURN(bool crow, c.Step());
    int64_t fee = 0;
    for (const auto& [account, value] : entries) {
      if (account == "fee") fee += value;
    }
    // A client who is also a provider nets out, so compare the totals, not entry by entry.
    if (crow && c.Int(0) + fee != amount) {
      return fail(id, absl::StrCat("records credit ", c.Int(0), " + fee ", fee,
                                   " but the settlement charged ", amount));
    }
  }
  sqlite::Statement balances = PreparedOnce(
      "SELECT a.id, COALESCE(b.balance_micro, 0), COALESCE(s.total, 0) FROM accounts a "
      "LEFT JOIN balances b ON b.account_id = a.id LEFT JOIN (SELECT account_id, "
      "SUM(amount_micro) AS total FROM entries GROUP BY account_id) s "
      "ON s.account_id = a.id ORDER BY a.id");
  std::string mismatch;
  LOOM_RETURN_IF_ERROR(sqlite::ForEachRow(balances, [&](sqlite::Statement& q) {
    if (mismatch.empty() && q.Int(1) != q.Int(2)) {
      mismatch = absl::StrCat("balance of ", q.Text(0), " is ", q.Int(1),
                              " but its entries sum to ", q.Int(2));
    }
  }));
  if (!mismatch.empty()) return fail(0, mismatch);
  return report;
}

}  // namespace loom
