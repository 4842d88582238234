#include "ledger/ledger_cli.h"

#include <cctype>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/json_dump.h"
#include "common/json_config.h"
#include "common/table.h"
#include "ledger/pricing.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

using json = nlohmann::json;

struct Command {
  const char* name;
  const char* usage;
  const char* what;
};

constexpr Command kCommands[] = {
    {"payouts", "payouts [--since=T] [--until=T] [--provider=ID]",
     "per provider: credits earned in the period, tokens, requests, devices, paid out in the "
     "period, unpaid balance now. T is 2026-11-23, RFC 3339 or Unix seconds; --until is "
     "exclusive."},
    {"balance", "balance ACCOUNT", "balance and available credits (balance minus live "
                                   "reservations) of client:NAME, provider:ID, mint, payout or fee."},
    {"accounts", "accounts", "every account with its kind, balance and reserved credits."},
    {"transactions", "transactions [--limit=N]",
     "the newest N transactions (default 1000, at most 1000), newest first: id, kind, reference, "
     "amount, time."},
    {"records", "records [--request=ID] [--provider=ID] [--limit=N]",
     "contribution records: which device and model earned what, in which role, for which "
     "request."},
    {"grant", "grant ACCOUNT AMOUNT --reference=R",
     "top up a client (or provider) account from the mint. Idempotent by reference."},
    {"payout", "payout PROVIDER AMOUNT --reference=R",
     "cash out a provider's earnings to the payout account; refused beyond its balance. "
     "Idempotent by reference."},
    {"keys", "keys create --client=NAME | keys create --provider=ID | keys list | keys revoke --key=ID",
     "API keys for the HTTP and gRPC APIs, each bound to a client account (requests with the "
     "key are charged to it) or to a provider (the key reads that provider's earnings: "
     "GET /loom/v1/earnings, loom earnings; it cannot spend). create prints the key once; only "
     "its hash is stored."},
    {"verify", "verify",
     "recompute the hash chain, check every transaction sums to zero and settlements match "
     "their records, run PRAGMA integrity_check; exit 0 when all hold, else name the first bad "
     "transaction and exit 3."},
    {"migrate", "migrate --from=sqlite:loom.db --to=postgresql://USER@HOST:PORT/DB",
     "copy a whole ledger into an empty one on another engine: the source is verified first, "
     "the copy is written in one transaction (its history chained anew), then verified, and "
     "every account's balance and the transaction count are compared. Stop the coordinators "
     "first: live reservations are not copied."},
};

}  // namespace

std::string CommandHelp(const std::string& command) {
  std::string out;
  for (const Command& c : kCommands) {
    if (!command.empty() && command != c.name) continue;
    absl::StrAppend(&out, "  loom-ledger --db=PATH ", c.usage, "\n      ", c.what, "\n");
  }
  if (!out.empty() && !command.empty()) {
    absl::StrAppend(&out, "  listings take --format=table|json|csv\n");
  }
  return out;
}

absl::StatusOr<OutputFormat> ParseOutputFormat(const std::string& name) {
  if (name == "table") return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "csv") return OutputFormat::kCsv;
  return absl::InvalidArgumentError(
      absl::StrCat("--format: unknown format '", name, "' (use table, json or csv)"));
}

absl::StatusOr<int64_t> ParseCredits(const std::string& text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "amount '", text, "' must be a positive number of credits with at most 6 decimals"));
  };
  const size_t dot = text.find('.');
  const std::string whole = text.substr(0, dot);
  std::string fraction = dot == std::string::npos ? "" : text.substr(dot + 1);
  if (whole.empty() && fraction.empty()) return bad();
  if (fraction.size() > 6) return bad();
  for (char c : whole + fraction) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
  }
  if (whole.size() > 12) return bad();  // at most 10^12 credits
  int64_t w = 0, f = 0;
  if (!whole.empty() && !absl::SimpleAtoi(whole, &w)) return bad();
  fraction.resize(6, '0');
  if (!absl::SimpleAtoi(fraction, &f)) return bad();
  const int64_t micro = w * kMicroPerCredit + f;
  if (micro <= 0) return bad();
  return micro;
}

absl::StatusOr<int64_t> ParseTimeMs(const std::string& text) {
  int64_t seconds;
  if (absl::SimpleAtoi(text, &seconds)) {
    // Unix seconds, within the years 0-9999 (found by the fuzzer: larger values overflowed).
    constexpr int64_t kMaxSeconds = 253'402'300'799;  // 9999-12-31T23:59:59Z
    if (seconds < -62'167'219'200 || seconds > kMaxSeconds) {
      return absl::InvalidArgumentError(absl::StrCat("time '", text, "' is out of range"));
    }
    return seconds * 1000;
  }
  absl::Time t;
  std::string err;
  for (const char* format : {absl::RFC3339_full, "%Y-%m-%d"}) {
    if (absl::ParseTime(format, text, absl::UTCTimeZone(), &t, &err)) return absl::ToUnixMillis(t);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "time '", text, "' must be YYYY-MM-DD, RFC 3339 (2026-11-23T10:00:00Z) or Unix seconds"));
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
               // A compete candidate's record says whether it won (the payout rule differs).
               r.role() == v1::CONTRIBUTION_ROLE_COMPETE
                   ? absl::StrCat(RoleName(r.role()), r.in_answer() ? " (winner)" : " (participant)")
                   : RoleName(r.role()),
               absl::StrCat(r.token_count()),
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

std::string FormatAccounts(const std::vector<AccountInfo>& accounts, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    json out = json::array();
    for (const auto& a : accounts) {
      out.push_back({{"account", a.id}, {"kind", a.kind}, {"balance", FormatCredits(a.balance_micro)},
                     {"balance_micro", a.balance_micro}, {"reserved_micro", a.reserved_micro},
                     {"available_micro", a.balance_micro - a.reserved_micro}});
    }
    return DumpJson(out) + "\n";
  }
  std::vector<Row> rows;
  for (const auto& a : accounts) {
    Row row = {a.id, a.kind, FormatCredits(a.balance_micro), FormatCredits(a.reserved_micro),
               FormatCredits(a.balance_micro - a.reserved_micro)};
    if (format == OutputFormat::kCsv) {
      row.push_back(absl::StrCat(a.balance_micro));
      row.push_back(absl::StrCat(a.reserved_micro));
    }
    rows.push_back(std::move(row));
  }
  Row header = {"account", "kind", "balance", "reserved", "available"};
  if (format == OutputFormat::kCsv) {
    header.push_back("balance_micro");
    header.push_back("reserved_micro");
    return FormatCsv(header, rows);
  }
  return FormatTextTable(header, rows);
}

std::string FormatTransactions(const std::vector<TransactionInfo>& transactions,
                               OutputFormat format) {
  if (format == OutputFormat::kJson) {
    json out = json::array();
    for (const auto& t : transactions) {
      out.push_back({{"id", t.id}, {"kind", t.kind}, {"reference", t.reference},
                     {"amount", FormatCredits(t.amount_micro)}, {"amount_micro", t.amount_micro},
                     {"created_ms", t.created_ms}});
    }
    return DumpJson(out) + "\n";
  }
  std::vector<Row> rows;
  for (const auto& t : transactions) {
    rows.push_back({absl::StrCat(t.id), t.kind, t.reference, FormatCredits(t.amount_micro),
                    absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(t.created_ms),
                                     absl::UTCTimeZone())});
  }
  const Row header = {"id", "kind", "reference", "amount", "time"};
  return format == OutputFormat::kCsv ? FormatCsv(header, rows) : FormatTextTable(header, rows);
}

std::string FormatPayouts(const std::vector<PayoutRow>& payouts, OutputFormat format) {
  if (format == OutputFormat::kJson) {
    json out = json::array();
    for (const auto& p : payouts) {
      out.push_back({{"provider", p.provider_id}, {"earned", FormatCredits(p.earned_micro)},
                     {"earned_micro", p.earned_micro}, {"tokens", p.tokens},
                     {"requests", p.requests}, {"devices", p.devices},
                     {"paid_out_micro", p.paid_out_micro}, {"unpaid_micro", p.unpaid_micro}});
    }
    return DumpJson(out) + "\n";
  }
  std::vector<Row> rows;
  for (const auto& p : payouts) {
    Row row = {p.provider_id, FormatCredits(p.earned_micro), absl::StrCat(p.tokens),
               absl::StrCat(p.requests), absl::StrCat(p.devices), FormatCredits(p.paid_out_micro),
               FormatCredits(p.unpaid_micro)};
    if (format == OutputFormat::kCsv) {
      for (int64_t v : {p.earned_micro, p.paid_out_micro, p.unpaid_micro}) row.push_back(absl::StrCat(v));
    }
    rows.push_back(std::move(row));
  }
  Row header = {"provider", "earned", "tokens", "requests", "devices", "paid_out", "unpaid"};
  if (format == OutputFormat::kCsv) {
    for (const char* h : {"earned_micro", "paid_out_micro", "unpaid_micro"}) header.push_back(h);
    return FormatCsv(header, rows);
  }
  if (rows.empty()) return "no provider earned or was paid in this period\n";
  return FormatTextTable(header, rows);
}

std::string FormatKeys(const std::vector<ApiKeyInfo>& keys, OutputFormat format) {
  auto when = [](int64_t ms) {
    return ms == 0 ? std::string("") : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
  };
  if (format == OutputFormat::kJson) {
    json out = json::array();
    for (const auto& k : keys) {
      out.push_back({{"id", k.id}, {"client", k.client_account}, {"created", when(k.created_ms)},
                     {"revoked", when(k.revoked_ms)}, {"valid", k.revoked_ms == 0}});
    }
    return DumpJson(out) + "\n";
  }
  std::vector<Row> rows;
  for (const auto& k : keys) {
    rows.push_back({k.id, k.client_account, when(k.created_ms),
                    k.revoked_ms ? "revoked " + when(k.revoked_ms) : "valid"});
  }
  Row header = {"key", "client", "created", "state"};
  return format == OutputFormat::kCsv ? FormatCsv(header, rows) : FormatTextTable(header, rows);
}

std::string FormatBalance(const std::string& account, int64_t balance, int64_t available,
                          OutputFormat format) {
  if (format == OutputFormat::kJson) {
    return DumpJson(json{{"account", account}, {"balance", FormatCredits(balance)},
                         {"balance_micro", balance}, {"available_micro", available}}) +
           "\n";
  }
  Row row = {account, FormatCredits(balance), FormatCredits(available)};
  if (format == OutputFormat::kCsv) {
    row.push_back(absl::StrCat(balance));
    row.push_back(absl::StrCat(available));
    return FormatCsv({"account", "balance", "available", "balance_micro", "available_micro"}, {row});
  }
  return FormatTextTable({"account", "balance", "available"}, {row});
}

}  // namespace loom
