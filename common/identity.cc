// File: common/identity.cc
#include "common/identity.h"

#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace loom {

void ParseSubject(absl::string_view subject, PeerIdentity* identity) {
  // Our ids never contain ',' '=' '+' or escapes (IsValidId), so a plain split is exact for
  // the attributes we read; anything else in the subject is ignored.
  for (absl::string_view part : absl::StrSplit(subject, ',')) {
    size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    absl::string_view key = part.substr(0, eq);
    absl::string_view value = part.substr(eq + 1);
    if (key == "CN") identity->name = std::string(value);
    if (key == "OU") identity->role = std::string(value);
    if (key == "O") identity->org = std::string(value);
  }
}

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace loom
