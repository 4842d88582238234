#include "ledger/ledger_cli.h"

#include <cctype>
#include <functional>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "loom/v1/ledger.pb.h"
#include "common/json_config.h"
#include "common/table.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

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

namespace {

// One column of a listing: its header and its cell. CSV adds the exact micro-credit columns a
// table leaves out (csv_only); JSON is the row's proto message.
template <typename T>
struct Column {
  std::string header;
  std::function<std::string(const T&)> cell;
  bool csv_only = false;
};

// A listing in any format from one column model and one proto per row.
template <typename T, typename ToProto>
std::string Listing(const std::vector<T>& rows, const std::vector<Column<T>>& columns,
                    OutputFormat format, ToProto to_proto) {
  if (format == OutputFormat::kJson) {
    std::string out = "[";
    for (size_t i = 0; i < rows.size(); ++i) {
      absl::StrAppend(&out, i ? "," : "", ToJson(to_proto(rows[i]), /*pretty=*/false));
    }
    return absl::StrCat(out, "]\n");
  }
  Row header;
  for (const Column<T>& c : columns) {
    if (!c.csv_only || format == OutputFormat::kCsv) header.push_back(c.header);
  }
  std::vector<Row> table;
  for (const T& r : rows) {
    Row& row = table.emplace_back();
    for (const Column<T>& c : columns) {
      if (!c.csv_only || format == OutputFormat::kCsv) row.push_back(c.cell(r));
    }
  }
  return format == OutputFormat::kCsv ? FormatCsv(header, table) : FormatTextTable(header, table);
}

template <typename T>
Column<T> Micro(std::string header, int64_t (*value)(const T&)) {
  return {std::move(header), [value](const T& r) { return absl::StrCat(value(r)); }, true};
}

std::string Rfc3339(int64_t ms) {
  return ms == 0 ? std::string()
                 : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

}  // namespace

std::string FormatRecords(const std::vector<v1::ContributionRecord>& records,
                          OutputFormat format) {
  using R = v1::ContributionRecord;
  const std::vector<Column<R>> columns = {
      {"request", [](const R& r) { return r.request_id(); }},
      {"sub_task", [](const R& r) { return r.sub_task_id(); }},
      {"attempt", [](const R& r) { return absl::StrCat(r.attempt()); }},
      {"device", [](const R& r) { return r.device_id(); }},
      {"provider", [](const R& r) { return r.provider_id(); }},
      {"model", [](const R& r) { return r.model(); }},
      // A compete candidate's record says whether it won (the payout rule differs).
      {"role",
       [](const R& r) {
         return r.role() == v1::CONTRIBUTION_ROLE_COMPETE
                    ? absl::StrCat(RoleName(r.role()), r.in_answer() ? " (winner)" : " (participant)")
                    : RoleName(r.role());
       }},
      {"tokens", [](const R& r) { return absl::StrCat(r.token_count()); }},
      {"weight", [](const R& r) { return absl::StrFormat("%.4f", r.weight()); }},
      {"credits", [](const R& r) { return FormatCredits(r.credits_micro()); }},
      Micro<R>("credits_micro", [](const R& r) { return r.credits_micro(); }),
  };
  return Listing(records, columns, format, [](const R& r) -> const R& { return r; });
}

std::string FormatAccounts(const std::vector<AccountInfo>& accounts, OutputFormat format) {
  using A = AccountInfo;
  const std::vector<Column<A>> columns = {
      {"account", [](const A& a) { return a.id; }},
      {"kind", [](const A& a) { return a.kind; }},
      {"balance", [](const A& a) { return FormatCredits(a.balance_micro); }},
      {"reserved", [](const A& a) { return FormatCredits(a.reserved_micro); }},
      {"available", [](const A& a) { return FormatCredits(a.balance_micro - a.reserved_micro); }},
      Micro<A>("balance_micro", [](const A& a) { return a.balance_micro; }),
      Micro<A>("reserved_micro", [](const A& a) { return a.reserved_micro; }),
  };
  return Listing(accounts, columns, format, [](const A& a) {
    v1::AccountRow row;
    row.set_account(a.id);
    row.set_kind(a.kind);
    row.set_balance(FormatCredits(a.balance_micro));
    row.set_balance_micro(a.balance_micro);
    row.set_reserved_micro(a.reserved_micro);
    row.set_available_micro(a.balance_micro - a.reserved_micro);
    return row;
  });
}

std::string FormatTransactions(const std::vector<TransactionInfo>& transactions,
                               OutputFormat format) {
  using T = TransactionInfo;
  const std::vector<Column<T>> columns = {
      {"id", [](const T& t) { return absl::StrCat(t.id); }},
      {"kind", [](const T& t) { return t.kind; }},
      {"reference", [](const T& t) { return t.reference; }},
      {"amount", [](const T& t) { return FormatCredits(t.amount_micro); }},
      {"time",
       [](const T& t) {
         return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(t.created_ms),
                                 absl::UTCTimeZone());
       }},
  };
  return Listing(transactions, columns, format, [](const T& t) {
    v1::TransactionRow row;
    row.set_id(t.id);
    row.set_kind(t.kind);
    row.set_reference(t.reference);
    row.set_amount(FormatCredits(t.amount_micro));
    row.set_amount_micro(t.amount_micro);
    row.set_created_unix_ms(t.created_ms);
    return row;
  });
}

std::string FormatPayouts(const std::vector<PayoutRow>& payouts, OutputFormat format) {
  if (format == OutputFormat::kTable && payouts.empty()) {
    return "no provider earned or was paid in this period\n";
  }
  using P = PayoutRow;
  const std::vector<Column<P>> columns = {
      {"provider", [](const P& p) { return p.provider_id; }},
      {"earned", [](const P& p) { return FormatCredits(p.earned_micro); }},
      {"tokens", [](const P& p) { return absl::StrCat(p.tokens); }},
      {"requests", [](const P& p) { return absl::StrCat(p.requests); }},
      {"devices", [](const P& p) { return absl::StrCat(p.devices); }},
      {"paid_out", [](const P& p) { return FormatCredits(p.paid_out_micro); }},
      {"unpaid", [](const P& p) { return FormatCredits(p.unpaid_micro); }},
      Micro<P>("earned_micro", [](const P& p) { return p.earned_micro; }),
      Micro<P>("paid_out_micro", [](const P& p) { return p.paid_out_micro; }),
      Micro<P>("unpaid_micro", [](const P& p) { return p.unpaid_micro; }),
  };
  return Listing(payouts, columns, format, [](const P& p) {
    v1::PayoutSummary row;
    row.set_provider(p.provider_id);
    row.set_earned(FormatCredits(p.earned_micro));
    row.set_earned_micro(p.earned_micro);
    row.set_tokens(p.tokens);
    row.set_requests(p.requests);
    row.set_devices(p.devices);
    row.set_paid_out_micro(p.paid_out_micro);
    row.set_unpaid_micro(p.unpaid_micro);
    return row;
  });
}

std::string FormatKeys(const std::vector<ApiKeyInfo>& keys, OutputFormat format) {
  using K = ApiKeyInfo;
  const std::vector<Column<K>> columns = {
      {"key", [](const K& k) { return k.id; }},
      {"client", [](const K& k) { return k.client_account; }},
      {"created", [](const K& k) { return Rfc3339(k.created_ms); }},
      {"state", [](const K& k) { return k.revoked_ms ? "revoked " + Rfc3339(k.revoked_ms) : "valid"; }},
  };
  return Listing(keys, columns, format, [](const K& k) {
    v1::ApiKeyRow row;
    row.set_id(k.id);
    row.set_client(k.client_account);
    row.set_created(Rfc3339(k.created_ms));
    row.set_revoked(Rfc3339(k.revoked_ms));
    row.set_valid(k.revoked_ms == 0);
    return row;
  });
}

std::string FormatBalance(const std::string& account, int64_t balance, int64_t available,
                          OutputFormat format) {
  v1::BalanceRow row;
  row.set_account(account);
  row.set_balance(FormatCredits(balance));
  row.set_balance_micro(balance);
  row.set_available_micro(available);
  if (format == OutputFormat::kJson) return ToJson(row, /*pretty=*/false) + "\n";  // one object
  using B = v1::BalanceRow;
  const std::vector<Column<B>> columns = {
      {"account", [](const B& b) { return b.account(); }},
      {"balance", [](const B& b) { return b.balance(); }},
      {"available", [](const B& b) { return FormatCredits(b.available_micro()); }},
      Micro<B>("balance_micro", [](const B& b) { return static_cast<int64_t>(b.balance_micro()); }),
      Micro<B>("available_micro", [](const B& b) { return static_cast<int64_t>(b.available_micro()); }),
  };
  return Listing(std::vector<B>{row}, columns, format, [](const B& b) -> const B& { return b; });
}

}  // namespace loom
