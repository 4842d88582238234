// File: ledger/ledger_cli.h
// What loom-ledger prints, separated from flag parsing so tests can check every format.
#ifndef LOOM_LEDGER_LEDGER_CLI_H_
#define LOOM_LEDGER_LEDGER_CLI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loom/v1/common.pb.h"

namespace loom {

enum class OutputFormat { kTable, kJson, kCsv };

// "table", "json" or "csv"; INVALID_ARGUMENT otherwise.
absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name);

// Contribution records as a table (credits shown in credits), JSON (the proto3 JSON mapping of
// each record, micro-credit integers included) or CSV (both credits and micro-credits).
std::string FormatRecords(const std::vector<v1::ContributionRecord>& records, OutputFormat format);

// "execute" for CONTRIBUTION_ROLE_EXECUTE.
std::string RoleName(v1::ContributionRole role);

}  // namespace loom

#endif  // LOOM_LEDGER_LEDGER_CLI_H_
