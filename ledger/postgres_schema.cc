// File: ledger/postgres_schema.cc
#include "ledger/postgres_schema.h"

#include <iterator>

#include "ledger/postgres_ledger.h"

namespace loom::pg {
namespace {

// Migration i takes the schema from version i to i+1. Never edit a released migration; append.
constexpr const char* kMigrations[] = {
    // 1: the books, the routing statistics, the keys.
    R"sql(
CREATE TABLE accounts(
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('client', 'provider', 'mint', 'payout', 'fee')),
  created_at_ms BIGINT NOT NULL);
CREATE TABLE balances(
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  balance_micro BIGINT NOT NULL);
CREATE TABLE chains(
  chain TEXT PRIMARY KEY,
  seq BIGINT NOT NULL,
  head TEXT NOT NULL);
CREATE TABLE transactions(
  id BIGSERIAL PRIMARY KEY,
  kind TEXT NOT NULL,
  reference TEXT NOT NULL UNIQUE,
  amount_micro BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  records_digest TEXT NOT NULL,
  chain TEXT NOT NULL,
  chain_seq BIGINT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  UNIQUE (chain, chain_seq));
CREATE INDEX transactions_by_kind ON transactions(kind, created_at_ms);
CREATE TABLE entries(
  txn_id BIGINT NOT NULL REFERENCES transactions(id),
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro BIGINT NOT NULL,
  PRIMARY KEY (txn_id, account_id));
CREATE INDEX entries_by_account ON entries(account_id);
CREATE TABLE contributions(
  request_id TEXT NOT NULL,
  sub_task_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  txn_id BIGINT NOT NULL REFERENCES transactions(id),
  device_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  model TEXT NOT NULL,
  role INTEGER NOT NULL,
  token_count BIGINT NOT NULL CHECK (token_count >= 0),
  weight DOUBLE PRECISION NOT NULL,
  credits_micro BIGINT NOT NULL CHECK (credits_micro >= 0),
  created_at_ms BIGINT NOT NULL,
  category INTEGER NOT NULL DEFAULT 0,
  in_answer BOOLEAN NOT NULL DEFAULT FALSE,
  PRIMARY KEY (request_id, sub_task_id, attempt));
CREATE INDEX contributions_by_provider ON contributions(provider_id, created_at_ms);
CREATE INDEX contributions_by_txn ON contributions(txn_id);
CREATE TABLE reservations(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  amount_micro BIGINT NOT NULL CHECK (amount_micro >= 0),
  created_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL,
  holder TEXT NOT NULL);
CREATE INDEX reservations_by_account ON reservations(account_id);
CREATE INDEX reservations_by_holder ON reservations(holder);
CREATE TABLE answers(
  request_id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  txn_id BIGINT NOT NULL REFERENCES transactions(id),
  response BYTEA NOT NULL,
  created_at_ms BIGINT NOT NULL);
CREATE INDEX answers_by_age ON answers(created_at_ms);
CREATE TABLE api_keys(
  id TEXT PRIMARY KEY,
  client_account TEXT NOT NULL REFERENCES accounts(id),
  secret_sha256 TEXT NOT NULL UNIQUE,
  created_at_ms BIGINT NOT NULL,
  revoked_at_ms BIGINT NOT NULL DEFAULT 0);
CREATE TABLE feedback(
  request_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  rating TEXT NOT NULL CHECK (rating IN ('good', 'bad')),
  sub_task_id TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  PRIMARY KEY (request_id, account_id));
CREATE TABLE outcomes(
  model TEXT NOT NULL,
  category INTEGER NOT NULL,
  good DOUBLE PRECISION NOT NULL CHECK (good >= 0),
  bad DOUBLE PRECISION NOT NULL CHECK (bad >= 0),
  updated_at_ms BIGINT NOT NULL,
  PRIMARY KEY (model, category));
INSERT INTO accounts(id, kind, created_at_ms) VALUES ('mint', 'mint', 0), ('payout', 'payout', 0),
  ('fee', 'fee', 0) ON CONFLICT (id) DO NOTHING;
INSERT INTO balances(account_id, balance_micro) VALUES ('mint', 0), ('payout', 0)
  ON CONFLICT (account_id) DO NOTHING;
)sql",
    // 2: the balance bound (LedgerAdmin::kMaxBalanceMicro = INT64_MAX / 4) held by the table,
    // so a balance move needs no answer read back before the commit.
    R"sql(
ALTER TABLE balances ADD CONSTRAINT balances_bounded
  CHECK (balance_micro BETWEEN -2305843009213693951 AND 2305843009213693951);
)sql",
};
static_assert(std::size(kMigrations) == PostgresLedger::kSchemaVersion);

}  // namespace

absl::Span<const char* const> Migrations() { return kMigrations; }

}  // namespace loom::pg
