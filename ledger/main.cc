// loom-ledger: reads the credit ledger. Commands: records.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/flags_usage.h"
#include "absl/strings/str_cat.h"
#include "ledger/ledger_cli.h"
#include "ledger/sqlite_ledger.h"

ABSL_FLAG(std::string, db, "loom.db", "Path of the ledger database (SQLite).");
ABSL_FLAG(std::string, format, "table", "Output format: table, json or csv.");
ABSL_FLAG(std::string, request, "", "records: only this request id.");
ABSL_FLAG(std::string, provider, "", "records: only this provider id.");
ABSL_FLAG(int64_t, limit, 1000, "records: at most this many rows.");

namespace {

constexpr char kUsage[] =
    "loom-ledger --db=PATH COMMAND [flags]\n"
    "\n"
    "Commands:\n"
    "  records   contribution records: which device and model earned what for which request\n"
    "            [--request=ID] [--provider=ID] [--limit=N] [--format=table|json|csv]\n"
    "\n"
    "Amounts are credits (1 credit = 1,000,000 micro-credits); json and csv carry the\n"
    "micro-credit integers.";

int Fail(const std::string& message) {
  std::cerr << "loom-ledger: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  loom::SetUsage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Fail("missing command (try --help)");
  const std::string command = args[1];
  auto format = loom::ParseOutputFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return Fail(std::string(format.status().message()));

  if (command == "records") {
    if (args.size() > 2) return Fail(absl::StrCat("records: unexpected argument '", args[2], "'"));
    auto ledger = loom::SqliteLedger::Open({.path = absl::GetFlag(FLAGS_db), .read_only = true});
    if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
    auto records = (*ledger)->ListRecords({.request_id = absl::GetFlag(FLAGS_request),
                                           .provider_id = absl::GetFlag(FLAGS_provider),
                                           .limit = absl::GetFlag(FLAGS_limit)});
    if (!records.ok()) return Fail(std::string(records.status().message()));
    std::cout << loom::FormatRecords(*records, *format);
    return 0;
  }
  return Fail(absl::StrCat("unknown command '", command, "' (try --help)"));
}
