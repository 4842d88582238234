// File: common/ids.h
// Random identifiers. Thread-safe.
#ifndef LOOM_COMMON_IDS_H_
#define LOOM_COMMON_IDS_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace loom {

inline constexpr size_t kMaxRequestIdBytes = 128;

// A random (version 4) UUID in canonical lowercase form.
std::string NewUuid();

// OK for an empty id (one is assigned) and for 1-128 printable ASCII characters (0x21-0x7E:
// what X-Request-Id and Idempotency-Key headers carry); INVALID_ARGUMENT naming the rule
// otherwise. Ids reach the ledger's hash chain, logs and headers, so no control byte, space or
// non-ASCII byte may pass.
absl::Status ValidRequestId(absl::string_view id);

// A client's name (the NAME of account "client:NAME"): 1-64 of letters, digits and . _ - @ +.
// No '/', so a scoped request id below is unambiguous.
absl::Status ValidClientName(absl::string_view name);

// A device's region (policies): 1-32 characters of a-z, 0-9 and - ("eu-west", "us-east-1").
bool IsValidRegion(absl::string_view region);

// The ledger's id for a request a client named itself: "<account>/<id>". Two clients' ids
// never collide, and one client cannot reach another's.
std::string ScopedRequestId(absl::string_view client_account, absl::string_view id);

}  // namespace loom

#endif  // LOOM_COMMON_IDS_H_
