// File: ledger/ledger_cli.h
// What loom-ledger parses and prints, separated from flag handling so tests can check every
// command's formats.
#ifndef LOOM_LEDGER_LEDGER_CLI_H_
#define LOOM_LEDGER_LEDGER_CLI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ledger/ledger_admin.h"
#include "loom/v1/common.pb.h"

namespace loom {

enum class OutputFormat { kTable, kJson, kCsv };

// "table", "json" or "csv"; INVALID_ARGUMENT otherwise.
absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name);

// A positive amount of credits with at most six decimals ("12", "0.5", "3.000001") as
// micro-credits, parsed exactly (no floating point).
absl::StatusOr<int64_t> ParseCredits(const std::string& text);

// A point in time: "2026-11-23", "2026-11-23T10:00:00Z" (RFC 3339) or Unix seconds; as Unix ms.
absl::StatusOr<int64_t> ParseTimeMs(const std::string& text);

// Contribution records: table (credits), JSON (proto3 JSON mapping, micro-credit integers),
// CSV (credits and micro-credits).
std::string FormatRecords(const std::vector<v1::ContributionRecord>& records, OutputFormat format);
std::string FormatAccounts(const std::vector<AccountInfo>& accounts, OutputFormat format);
std::string FormatTransactions(const std::vector<TransactionInfo>& transactions,
                               OutputFormat format);
std::string FormatPayouts(const std::vector<PayoutRow>& rows, OutputFormat format);
std::string FormatKeys(const std::vector<ApiKeyInfo>& keys, OutputFormat format);
std::string FormatBalance(const std::string& account, int64_t balance, int64_t available,
                          OutputFormat format);

// "execute" for CONTRIBUTION_ROLE_EXECUTE.
std::string RoleName(v1::ContributionRole role);

// Help for one command ("" = all); empty string for an unknown command.
std::string CommandHelp(const std::string& command);

}  // namespace loom

#endif  // LOOM_LEDGER_LEDGER_CLI_H_
