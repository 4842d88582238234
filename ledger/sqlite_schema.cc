#include "ledger/sqlite_schema.h"

#include <iterator>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "absl/strings/str_cat.h"

namespace loom::sqlite {
namespace {

// Migration i takes the schema from version i to i+1. Never edit a released migration; append.
constexpr const char* kMigrations[] = {
    // 1: accounts, transactions, entries, contributions.
    R"sql(
CREATE TABLE accounts(
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('client', 'provider', 'mint', 'payout', 'fee')),
  created_at_ms INTEGER NOT NULL);
CREATE TABLE transactions(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  amount_micro INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL);
CREATE TABLE entries(
  txn_id INTEGER NOT NULL REFERENCES transactions(id),
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL,
  PRIMARY KEY (txn_id, account_id));
CREATE INDEX entries_by_account ON entries(account_id);
CREATE TABLE contributions(
  request_id TEXT NOT NULL,
  sub_task_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  txn_id INTEGER NOT NULL REFERENCES transactions(id),
  device_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  model TEXT NOT NULL,
  role INTEGER NOT NULL,
  token_count INTEGER NOT NULL CHECK (token_count >= 0),
  weight REAL NOT NULL,
  credits_micro INTEGER NOT NULL CHECK (credits_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (request_id, sub_task_id, attempt));
CREATE INDEX contributions_by_provider ON contributions(provider_id, created_at_ms);
)sql",
    // 2: hash chain, settlement digests, reservations, system accounts.
    R"sql(
ALTER TABLE transactions ADD COLUMN records_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE transactions ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE INDEX transactions_by_kind ON transactions(kind, created_at_ms);
CREATE INDEX contributions_by_txn ON contributions(txn_id);
CREATE TABLE reservations(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL);
CREATE INDEX reservations_by_account ON reservations(account_id, expires_at_ms);
INSERT INTO accounts(id, kind, created_at_ms) VALUES ('mint', 'mint', 0), ('payout', 'payout', 0),
  ('fee', 'fee', 0) ON CONFLICT(id) DO NOTHING;
)sql",
    // 3: balances kept beside the entries, in the same transactions (Verify checks them).
    R"sql(
CREATE TABLE balances(
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  balance_micro INTEGER NOT NULL);
INSERT INTO balances(account_id, balance_micro)
  SELECT a.id, COALESCE((SELECT SUM(e.amount_micro) FROM entries e WHERE e.account_id = a.id), 0)
  FROM accounts a;
)sql",
    // 4: API keys, bound to client accounts, kept as hashes.
    R"sql(
CREATE TABLE api_keys(
  id TEXT PRIMARY KEY,
  client_account TEXT NOT NULL REFERENCES accounts(id),
  secret_sha256 TEXT NOT NULL UNIQUE,
  created_at_ms INTEGER NOT NULL,
  revoked_at_ms INTEGER NOT NULL DEFAULT 0);
)sql",
    // 5: fewer b-tree pages per settlement (each dirty page is a WAL write on the request's
    // path). Tables keyed by their natural key are WITHOUT ROWID (one b-tree, not a table plus
    // its key index); transactions drop AUTOINCREMENT (ids were always chosen by the ledger, and
    // its sqlite_sequence row was one more page per write); indexes no query needs on a hot or
    // per-row path are dropped: entries by account and contributions by transaction (Verify
    // sums entries in one pass and finds a settlement's records by request id), reservations
    // by account (the table holds only live reservations). New tables are built beside the old
    // ones, referencing each other, and renamed into place; renaming rewrites the references.
    R"sql(
CREATE TABLE transactions_v5(
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  amount_micro INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  records_digest TEXT NOT NULL DEFAULT '',
  prev_hash TEXT NOT NULL DEFAULT '',
  hash TEXT NOT NULL DEFAULT '');
INSERT INTO transactions_v5(id, kind, reference, amount_micro, created_at_ms, records_digest,
                            prev_hash, hash)
  SELECT id, kind, reference, amount_micro, created_at_ms, records_digest, prev_hash, hash
  FROM transactions;
CREATE TABLE entries_v5(
  txn_id INTEGER NOT NULL REFERENCES transactions_v5(id),
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL,
  PRIMARY KEY (txn_id, account_id)) WITHOUT ROWID;
INSERT INTO entries_v5(txn_id, account_id, amount_micro)
  SELECT txn_id, account_id, amount_micro FROM entries;
CREATE TABLE contributions_v5(
  request_id TEXT NOT NULL,
  sub_task_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  txn_id INTEGER NOT NULL REFERENCES transactions_v5(id),
  device_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  model TEXT NOT NULL,
  role INTEGER NOT NULL,
  token_count INTEGER NOT NULL CHECK (token_count >= 0),
  weight REAL NOT NULL,
  credits_micro INTEGER NOT NULL CHECK (credits_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (request_id, sub_task_id, attempt)) WITHOUT ROWID;
INSERT INTO contributions_v5(request_id, sub_task_id, attempt, txn_id, device_id, provider_id,
                             model, role, token_count, weight, credits_micro, created_at_ms)
  SELECT request_id, sub_task_id, attempt, txn_id, device_id, provider_id, model, role,
         token_count, weight, credits_micro, created_at_ms FROM contributions;
CREATE TABLE balances_v5(
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  balance_micro INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO balances_v5(account_id, balance_micro) SELECT account_id, balance_micro FROM balances;
CREATE TABLE reservations_v5(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO reservations_v5(request_id, account_id, amount_micro, created_at_ms, expires_at_ms)
  SELECT request_id, account_id, amount_micro, created_at_ms, expires_at_ms FROM reservations;
DROP TABLE contributions;
DROP TABLE entries;
DROP TABLE transactions;
DROP TABLE balances;
DROP TABLE reservations;
ALTER TABLE transactions_v5 RENAME TO transactions;
ALTER TABLE entries_v5 RENAME TO entries;
ALTER TABLE contributions_v5 RENAME TO contributions;
ALTER TABLE balances_v5 RENAME TO balances;
ALTER TABLE reservations_v5 RENAME TO reservations;
CREATE INDEX transactions_by_kind ON transactions(kind, created_at_ms);
CREATE INDEX contributions_by_provider ON contributions(provider_id, created_at_ms);
)sql",
    // 6: reservations name their holder (the coordinator instance), so a restarted
    // coordinator releases its own orphans at start.
    R"sql(
ALTER TABLE reservations ADD COLUMN holder TEXT NOT NULL DEFAULT '';
)sql",
    // 7: an unambiguous (length-prefixed) hash form for new transactions, and the answers
    // settlements keep for replays of their request ids.
    R"sql(
ALTER TABLE transactions ADD COLUMN chain_version INTEGER NOT NULL DEFAULT 1;
CREATE TABLE answers(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  txn_id INTEGER NOT NULL REFERENCES transactions(id),
  response BLOB NOT NULL,
  created_at_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX answers_by_age ON answers(created_at_ms);
)sql",
    // 8: what each contribution's work was and whether it reached the answer, the clients'
    // verdicts on their requests, and the outcomes observed per (model, category) that move
    // the selector's affinities. Routing statistics, not money: the hash chain does not cover
    // them.
    R"sql(
ALTER TABLE contributions ADD COLUMN category INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contributions ADD COLUMN in_answer INTEGER NOT NULL DEFAULT 0;
CREATE TABLE feedback(
  request_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  rating TEXT NOT NULL CHECK (rating IN ('good', 'bad')),
  sub_task_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (request_id, account_id)) WITHOUT ROWID;
CREATE TABLE outcomes(
  model TEXT NOT NULL,
  category INTEGER NOT NULL,
  good REAL NOT NULL CHECK (good >= 0),
  bad REAL NOT NULL CHECK (bad >= 0),
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (model, category)) WITHOUT ROWID;
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

// After migration 2: digests for settlements written by version 1, then the hash chain over
// every existing transaction.
absl::Status HashExistingTransactions(sqlite3* db) {
  {
    Statement settles(db, "SELECT id FROM transactions WHERE kind = 'settle' ORDER BY id");
    std::vector<int64_t> ids;
    LOOM_RETURN_IF_ERROR(ForEachRow(settles, [&](Statement& q) { ids.push_back(q.Int(0)); }));
    for (int64_t id : ids) {
      Statement q(db, absl::StrCat("SELECT ", kRecordColumns,
                                   " FROM contributions WHERE txn_id = ?1"));
      q.Bind(1, id);
      LOOM_ASSIGN_OR_RETURN(std::vector<v1::ContributionRecord> records,
                            Collect<v1::ContributionRecord>(q, RecordFromRow));
      Statement u(db, "UPDATE transactions SET records_digest = ?1 WHERE id = ?2");
      LOOM_RETURN_IF_ERROR(u.Bind(1, RecordsDigest(records)).Bind(2, id).Run());
    }
  }
  struct Row {
    int64_t id, amount, created;
    std::string kind, reference, digest;
  };
  Statement all(db,
                "SELECT id, kind, reference, amount_micro, created_at_ms, records_digest "
                "FROM transactions ORDER BY id");
  LOOM_ASSIGN_OR_RETURN(std::vector<Row> rows, Collect<Row>(all, [](const Statement& q) {
                          return Row{q.Int(0), q.Int(3), q.Int(4), q.Text(1), q.Text(2), q.Text(5)};
                        }));
  std::string prev;
  for (const Row& r : rows) {
    LOOM_ASSIGN_OR_RETURN(Entries entries, LoadEntries(db, r.id));
    const std::string hash = Sha256Hex(
        TxnCanonical(1, prev, r.id, r.kind, r.reference, r.amount, r.created, r.digest, entries));
    Statement u(db, "UPDATE transactions SET prev_hash = ?1, hash = ?2 WHERE id = ?3");
    LOOM_RETURN_IF_ERROR(u.Bind(1, prev).Bind(2, hash).Bind(3, r.id).Run());
    prev = hash;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> UserVersion(sqlite3* db) {
  // Finalized on return: a live statement is an open read transaction (PRAGMAs and DROP
  // TABLE after it would fail).
  Statement version(db, "PRAGMA user_version");
  LOOM_ASSIGN_OR_RETURN(bool row, version.Step());
  return row ? static_cast<int>(version.Int(0)) : 0;
}

absl::Status Migrate(sqlite3* db) {
  LOOM_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  auto migrate = [&]() -> absl::Status {
    LOOM_ASSIGN_OR_RETURN(const int current, UserVersion(db));
    if (current > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("ledger schema version ", current, " is newer than this build (",
                       kSchemaVersion, "); upgrade Loom"));
    }
    for (int v = current; v < kSchemaVersion; ++v) {
      LOOM_RETURN_IF_ERROR(Exec(db, kMigrations[v]));
      if (v + 1 == 2) LOOM_RETURN_IF_ERROR(HashExistingTransactions(db));
    }
    return Exec(db, absl::StrCat("PRAGMA user_version=", kSchemaVersion));
  };
  absl::Status status = migrate();
  if (!status.ok()) {
    (void)Exec(db, "ROLLBACK");
    return status;
  }
  return Exec(db, "COMMIT");
}

v1::ContributionRecord RecordFromRow(const Statement& q) {
  v1::ContributionRecord r;
  r.set_request_id(q.Text(0));
  r.set_sub_task_id(q.Text(1));
  r.set_attempt(static_cast<int32_t>(q.Int(2)));
  r.set_device_id(q.Text(3));
  r.set_provider_id(q.Text(4));
  r.set_model(q.Text(5));
  r.set_role(static_cast<v1::ContributionRole>(q.Int(6)));
  r.set_token_count(q.Int(7));
  r.set_weight(q.Double(8));
  r.set_credits_micro(q.Int(9));
  r.set_created_unix_ms(q.Int(10));
  if (q.columns() > 12) {
    const int64_t category = q.Int(11);
    if (v1::TaskCategory_IsValid(static_cast<int>(category))) {
      r.set_category(static_cast<v1::TaskCategory>(category));
    }
    r.set_in_answer(q.Int(12) != 0);
  }
  return r;
}

absl::StatusOr<Entries> LoadEntries(sqlite3* db, int64_t txn_id) {
  Statement q(db, "SELECT account_id, amount_micro FROM entries WHERE txn_id = ?1");
  q.Bind(1, txn_id);
  return Collect<std::pair<std::string, int64_t>>(
      q, [](const Statement& r) { return std::make_pair(r.Text(0), r.Int(1)); });
}

}  // namespace loom::sqlite
