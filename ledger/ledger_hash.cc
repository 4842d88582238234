// File: ledger/ledger_hash.cc
#include "ledger/ledger_hash.h"

#include <algorithm>
#include <tuple>


#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/identity.h"

namespace loom {

bool IsValidProviderId(absl::string_view id) { return IsValidId(id); }


// A digest of a settlement's records, independent of their order (weights left out: they are
// derived and floating point).
std::string RecordsDigest(const std::vector<v1::ContributionRecord>& records) {
  std::vector<const v1::ContributionRecord*> sorted;
  sorted.reserve(records.size());
  for (const auto& r : records) sorted.push_back(&r);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
    return std::make_tuple(a->sub_task_id(), a->attempt()) <
           std::make_tuple(b->sub_task_id(), b->attempt());
  });
  std::string canonical;
  for (const v1::ContributionRecord* r : sorted) {
    absl::StrAppend(&canonical, r->sub_task_id(), "|", r->attempt(), "|", r->device_id(), "|",
                    r->provider_id(), "|", r->model(), "|", static_cast<int>(r->role()), "|",
                    r->token_count(), "|", r->credits_micro(), "\n");
  }
  return Sha256Hex(canonical);
}

std::string TxnCanonical(int version, const std::string& prev_hash, int64_t id,
                         const std::string& kind, const std::string& reference, int64_t amount,
                         int64_t created_ms, const std::string& digest, Entries entries) {
  std::sort(entries.begin(), entries.end());
  if (version == 1) {
    std::string out = absl::StrCat(prev_hash, "|", id, "|", kind, "|", reference, "|", amount,
                                   "|", created_ms, "|", digest);
    for (const auto& [account, value] : entries) absl::StrAppend(&out, "|", account, "=", value);
    return out;
  }
  std::string out;
  auto field = [&out](absl::string_view bytes) { absl::StrAppend(&out, bytes.size(), ":", bytes); };
  field(absl::StrCat("v", version));
  field(prev_hash);
  field(absl::StrCat(id));
  field(kind);
  field(reference);
  field(absl::StrCat(amount));
  field(absl::StrCat(created_ms));
  field(digest);
  field(absl::StrCat(entries.size()));
  for (const auto& [account, value] : entries) {
    field(account);
    field(absl::StrCat(value));
  }
  return out;
}

}  // namespace loom
