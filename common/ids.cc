#include "common/ids.h"

#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace loom {

std::string NewUuid() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t hi, lo;
  {
    absl::MutexLock lock(&mu);
    hi = absl::Uniform<uint64_t>(*gen);
    lo = absl::Uniform<uint64_t>(*gen);
  }
  hi = (hi & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  // 8-4-4-4-12 hex digits, most significant first.
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  int pos = 35;
  auto put = [&](uint64_t v, int digits) {
    for (int i = 0; i < digits; ++i, v >>= 4) out[pos--] = kHex[v & 0xF];
  };
  put(lo, 12);
  --pos;
  put(lo >> 48, 4);
  --pos;
  put(hi, 4);
  --pos;
  put(hi >> 16, 4);
  --pos;
  put(hi >> 32, 8);
  return out;
}

absl::Status ValidRequestId(absl::string_view id) {
  if (id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("request id is ", id.size(),
                                                   " bytes; the limit is ", kMaxRequestIdBytes));
  }
  for (unsigned char c : id) {
    if (c < 0x21 || c > 0x7E) {
      return absl::InvalidArgumentError(
          "request id must be printable ASCII without spaces (0x21-0x7E)");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidClientName(absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError("a client name has 1-64 characters");
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-' && c != '@' && c != '+') {
      return absl::InvalidArgumentError(absl::StrCat(
          "client name '", name, "' may hold only letters, digits and . _ - @ +"));
    }
  }
  return absl::OkStatus();
}

std::string ScopedRequestId(absl::string_view client_account, absl::string_view id) {
  return absl::StrCat(client_account, "/", id);
}

bool IsValidRegion(absl::string_view region) {
  if (region.empty() || region.size() > 32) return false;
  for (char c : region) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace loom
