#include "ledger/ledger_cli.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/json_config.h"
#include "common/table.h"
#include "ledger/pricing.h"

namespace loom {

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name) {
  if (name == "table") return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "csv") return OutputFormat::kCsv;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: unknown format '", name, "' (use table, json or csv)"));
}

std::string RoleName(v1::ContributionRole role) {
  std::string name = v1::ContributionRole_Name(role);
  return absl::AsciiStrToLower(absl::StripPrefix(name, "CONTRIBUTION_ROLE_"));
}

std::string FormatRecords(const std::vector<v1::ContributionRecord>& records,
                          OutputFormat format) {
  if (format == OutputFormat::kJson) {
    std::string out = "[";
    for (size_t i = 0; i < records.size(); ++i) {
      absl::StrAppend(&out, i ? "," : "", ToJson(records[i], /*pretty=*/false));
    }
    return absl::StrCat(out, "]\n");
  }
  std::vector<Row> rows;
  for (const auto& r : records) {
    Row row = {r.request_id(),  r.sub_task_id(),          absl::StrCat(r.attempt()),
               r.device_id(),   r.provider_id(),          r.model(),
               RoleName(r.role()), absl::StrCat(r.token_count()),
               absl::StrFormat("%.4f", r.weight()), FormatCredits(r.credits_micro())};
    if (format == OutputFormat::kCsv) row.push_back(absl::StrCat(r.credits_micro()));
    rows.push_back(std::move(row));
  }
  Row header = {"request", "sub_task", "attempt", "device", "provider",
                "model",   "role",     "tokens",  "weight", "credits"};
  if (format == OutputFormat::kCsv) {
    header.push_back("credits_micro");
    return FormatCsv(header, rows);
  }
  return FormatTextTable(header, rows);
}

}  // namespace loom
