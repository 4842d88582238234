// loom-ledger: reads and operates the credit ledger.
#include <cstring>
#include <map>
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/flags_usage.h"
#include "ledger/ledger_cli.h"
#include "ledger/pricing.h"
#include "ledger/ledger_open.h"

ABSL_FLAG(std::string, db, "loom.db", "Path of the ledger database (SQLite); see --ledger.");
ABSL_FLAG(std::string, ledger, "",
          "The ledger: sqlite:PATH (default: sqlite:<--db>) or postgresql://USER@HOST:PORT/DB.");
ABSL_FLAG(std::string, ledger_password_file, "",
          "PostgreSQL: a file holding the password (else PGPASSWORD or ~/.pgpass).");
ABSL_FLAG(std::string, format, "table", "Output format of listings: table, json or csv.");
ABSL_FLAG(std::string, request, "", "records: only this request id.");
ABSL_FLAG(std::string, provider, "", "records, payouts: only this provider id; keys create: the provider the key is for.");
ABSL_FLAG(int64_t, limit, 1000, "records, transactions: at most this many rows.");
ABSL_FLAG(std::string, since, "", "payouts: from this time (inclusive).");
ABSL_FLAG(std::string, until, "", "payouts: until this time (exclusive).");
ABSL_FLAG(std::string, reference, "", "grant, payout: idempotency reference (required).");
ABSL_FLAG(std::string, client, "", "keys create: the client account name the key is charged to.");
ABSL_FLAG(std::string, key, "", "keys revoke: the key id (key_...).");
ABSL_FLAG(std::string, from, "", "migrate: the ledger to copy (default: --ledger / --db).");
ABSL_FLAG(std::string, to, "", "migrate: the empty ledger to copy into.");

namespace {

int Fail(const std::string& message) {
  std::cerr << "loom-ledger: " << message << "\n";
  return 1;
}

std::string Usage() {
  return absl::StrCat(
      "loom-ledger --db=PATH COMMAND [ARGS] [flags]\n\nCommands:\n", loom::CommandHelp(""),
      "\nAmounts are credits (1 credit = 1,000,000 micro-credits); json and csv also carry the\n"
      "micro-credit integers. `loom-ledger COMMAND --help` explains one command.");
}

std::string LedgerSpec() {
  return absl::GetFlag(FLAGS_ledger).empty() ? absl::StrCat("sqlite:", absl::GetFlag(FLAGS_db))
                                             : absl::GetFlag(FLAGS_ledger);
}

absl::StatusOr<std::unique_ptr<loom::LedgerAdmin>> OpenLedger(bool read_only) {
  // One connection: a command is one caller.
  return loom::OpenLedger(LedgerSpec(), {.read_only = read_only,
                                         .password_file = absl::GetFlag(FLAGS_ledger_password_file),
                                         .connections = 1});
}

}  // namespace

// Long on purpose: one branch per loom-ledger command, each a few lines that call the
// LedgerStore and print through the column model (ledger_cli.h).
int main(int argc, char** argv) {
  // Per-command help before Abseil takes --help for itself.
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i][0] != '-' && (!strcmp(argv[i + 1], "--help") || !strcmp(argv[i + 1], "-h"))) {
      const std::string help = loom::CommandHelp(argv[i]);
      if (help.empty()) return Fail(absl::StrCat("unknown command '", argv[i], "'"));
      std::cout << help;
      return 0;
    }
  }
  loom::SetUsage(Usage());
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Fail("missing command (try --help)");
  const std::string command = args[1];
  const std::vector<std::string> rest(args.begin() + 2, args.end());
  auto format = loom::ParseOutputFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return Fail(std::string(format.status().message()));
  auto expect_args = [&](size_t n) -> bool { return rest.size() == n; };

  if (command == "records") {
    if (!expect_args(0)) return Fail("records takes no arguments; use --request=ID");
    auto ledger = OpenLedger(true);
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    auto records = (*ledger)->ListRecords({.request_id = absl::GetFlag(FLAGS_request),
                                           .provider_id = absl::GetFlag(FLAGS_provider),
                                           .limit = absl::GetFlag(FLAGS_limit)});
    if (!records.ok()) return Fail(std::string(records.status().message()));
    std::cout << loom::FormatRecords(*records, *format);
    return 0;
  }
  if (command == "accounts") {
    if (!expect_args(0)) return Fail("accounts takes no arguments");
    auto ledger = OpenLedger(true);
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    auto accounts = (*ledger)->Accounts();
    if (!accounts.ok()) return Fail(std::string(accounts.status().message()));
    std::cout << loom::FormatAccounts(*accounts, *format);
    return 0;
  }
  if (command == "transactions") {
    if (!expect_args(0)) return Fail("transactions takes no arguments; use --limit=N");
    auto ledger = OpenLedger(true);
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    const int64_t limit = absl::GetFlag(FLAGS_limit);  // out of 1-1000: refused by the ledger
    auto transactions = (*ledger)->RecentTransactions(
        static_cast<int>(std::clamp<int64_t>(limit, 0, 1001)));
    if (!transactions.ok()) return Fail(std::string(transactions.status().message()));
    std::cout << loom::FormatTransactions(*transactions, *format);
    return 0;
  }
  if (command == "balance") {
    if (!expect_args(1)) return Fail("balance takes one ACCOUNT, e.g. client:alice or provider:bob");
    auto ledger = OpenLedger(true);
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    auto balance = (*ledger)->Balance(rest[0]);
    auto available = (*ledger)->Available(rest[0]);
    if (!balance.ok()) return Fail(std::string(balance.status().message()));
    if (!available.ok()) return Fail(std::string(available.status().message()));
    std::cout << loom::FormatBalance(rest[0], *balance, *available, *format);
    return 0;
  }
  if (command == "payouts") {
    if (!expect_args(0)) return Fail("payouts takes no arguments; use --since/--until/--provider");
    loom::PayoutFilter filter;
    filter.provider_id = absl::GetFlag(FLAGS_provider);
    if (!absl::GetFlag(FLAGS_since).empty()) {
      auto t = loom::ParseTimeMs(absl::GetFlag(FLAGS_since));
      if (!t.ok()) return Fail(absl::StrCat("--since: ", t.status().message()));
      filter.since_ms = *t;
    }
    if (!absl::GetFlag(FLAGS_until).empty()) {
      auto t = loom::ParseTimeMs(absl::GetFlag(FLAGS_until));
      if (!t.ok()) return Fail(absl::StrCat("--until: ", t.status().message()));
      filter.until_ms = *t;
    }
    auto ledger = OpenLedger(true);
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    auto rows = (*ledger)->Payouts(filter);
    if (!rows.ok()) return Fail(std::string(rows.status().message()));
    std::cout << loom::FormatPayouts(*rows, *format);
    return 0;
  }
  if (command == "grant" || command == "payout") {
    if (!expect_args(2)) {
      return Fail(absl::StrCat(command, " takes ", command == "grant" ? "ACCOUNT" : "PROVIDER",
                               " AMOUNT --reference=R"));
    }
    if (absl::GetFlag(FLAGS_reference).empty()) {
      return Fail(absl::StrCat(command, ": --reference=R is required (it makes the ", command,
                               " idempotent)"));
    }
    auto amount = loom::ParseCredits(rest[1]);
    if (!amount.ok()) return Fail(std::string(amount.status().message()));
    auto ledger = OpenLedger(false);
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    auto id = command == "grant"
                  ? (*ledger)->Grant(rest[0], *amount, absl::GetFlag(FLAGS_reference))
                  : (*ledger)->Payout(rest[0], *amount, absl::GetFlag(FLAGS_reference));
    if (!id.ok()) return Fail(std::string(id.status().message()));
    std::cout << command << " of " << loom::FormatCredits(*amount) << " credits to "
              << (command == "grant" ? rest[0] : "payout from provider:" + rest[0])
              << ": transaction " << *id << "\n";
    return 0;
  }
  if (command == "keys") {
    if (rest.size() != 1) return Fail("keys takes one of create, list, revoke");
    auto ledger = OpenLedger(rest[0] == "list");
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    if (rest[0] == "create") {
      const std::string client = absl::GetFlag(FLAGS_client);
      const std::string provider = absl::GetFlag(FLAGS_provider);
      if (client.empty() == provider.empty()) {
        return Fail("keys create: give --client=NAME (a key that spends) or --provider=ID (a key "
                    "that reads that provider's earnings)");
      }
      auto key = client.empty() ? (*ledger)->CreateProviderKey(provider)
                                : (*ledger)->CreateKey(client);
      if (!key.ok()) return Fail(std::string(key.status().message()));
      std::cerr << "key " << key->first.id << " for " << key->first.client_account
                << " (shown once; store it now):\n";
      std::cout << key->second << "\n";
      return 0;
    }
    if (rest[0] == "revoke") {
      if (absl::GetFlag(FLAGS_key).empty()) return Fail("keys revoke: --key=ID is required");
      absl::Status s = (*ledger)->RevokeKey(absl::GetFlag(FLAGS_key));
      if (!s.ok()) return Fail(std::string(s.message()));
      std::cout << "revoked " << absl::GetFlag(FLAGS_key) << "\n";
      return 0;
    }
    if (rest[0] == "list") {
      auto keys = (*ledger)->ListKeys();
      if (!keys.ok()) return Fail(std::string(keys.status().message()));
      std::cout << loom::FormatKeys(*keys, *format);
      return 0;
    }
    return Fail(absl::StrCat("keys: unknown action '", rest[0], "' (create, list or revoke)"));
  }
  if (command == "migrate") {
    if (!expect_args(0)) return Fail("migrate takes no arguments; use --from=... --to=...");
    const std::string from = absl::GetFlag(FLAGS_from).empty() ? LedgerSpec() : absl::GetFlag(FLAGS_from);
    const std::string to = absl::GetFlag(FLAGS_to);
    if (to.empty()) return Fail("migrate needs --to=postgresql://... (an empty ledger)");
    auto source = loom::OpenLedger(from, {.read_only = true, .connections = 1});
    if (!source.ok()) return Fail(absl::StrCat("source: ", source.status().message()));
    auto checked = (*source)->Verify();
    if (!checked.ok()) return Fail(std::string(checked.status().message()));
    if (!checked->ok) {
      return Fail(absl::StrCat("the source does not verify (transaction ",
                               checked->first_bad_transaction, ": ", checked->problem,
                               "); nothing copied"));
    }
    auto copy = (*source)->Export();
    if (!copy.ok()) return Fail(std::string(copy.status().message()));
    auto target = loom::OpenLedger(
        to, {.password_file = absl::GetFlag(FLAGS_ledger_password_file), .connections = 1});
    if (!target.ok()) return Fail(absl::StrCat("target: ", target.status().message()));
    if (auto s = (*target)->Import(*copy); !s.ok()) return Fail(std::string(s.message()));
    auto report = (*target)->Verify();
    if (!report.ok()) return Fail(std::string(report.status().message()));
    if (!report->ok || report->transactions != checked->transactions) {
      std::cerr << "loom-ledger: the copy does not verify: " << report->problem << " ("
                << report->transactions << " of " << checked->transactions << " transactions)\n";
      return 3;
    }
    auto before = (*source)->Accounts();
    auto after = (*target)->Accounts();
    if (!before.ok() || !after.ok()) return Fail("cannot list the accounts to compare");
    std::map<std::string, int64_t> balances;
    for (const auto& a : *before) balances[a.id] = a.balance_micro;
    for (const auto& a : *after) {
      if (!balances.count(a.id) || balances[a.id] != a.balance_micro) {
        std::cerr << "loom-ledger: balance of " << a.id << " differs after the copy\n";
        return 3;
      }
      balances.erase(a.id);
    }
    if (!balances.empty()) {
      std::cerr << "loom-ledger: " << balances.begin()->first << " is missing from the copy\n";
      return 3;
    }
    std::cout << "migrated " << copy->transactions.size() << " transactions, "
              << copy->accounts.size() << " accounts, " << copy->records.size() << " records, "
              << copy->keys.size() << " keys; the copy verifies and every balance is equal\n";
    return 0;
  }
  if (command == "verify") {
    if (!expect_args(0)) return Fail("verify takes no arguments");
    auto ledger = OpenLedger(true);
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    auto report = (*ledger)->Verify();
    if (!report.ok()) return Fail(std::string(report.status().message()));
    if (!report->ok) {
      std::cerr << "loom-ledger: verify FAILED at transaction " << report->first_bad_transaction
                << ": " << report->problem << "\n";
      return 3;
    }
    const bool sqlite = loom::LedgerEngine(LedgerSpec()).value_or("") == "sqlite";
    std::cout << "ledger ok: " << report->transactions
              << (sqlite ? " transactions, hash chain intact" : " transactions, hash chains intact")
              << ", every transaction sums to zero, balances match their entries"
              << (sqlite ? ", integrity_check ok\n" : "\n");
    return 0;
  }
  return Fail(absl::StrCat("unknown command '", command, "' (try --help)"));
}
