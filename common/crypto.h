// File: common/crypto.h
// The one place Loom calls OpenSSL for hashing, MACs and randomness: SHA-256, HMAC-SHA-256,
// random bytes, all as lowercase hex, and a comparison that takes the same time whatever the
// inputs hold. Ledger hashes, API key hashes, join tokens and their proofs are built from these.
//
// Pure functions (randomness from OpenSSL's RAND_bytes); thread-safe.
#ifndef LOOM_COMMON_CRYPTO_H_
#define LOOM_COMMON_CRYPTO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace loom {

// Lowercase hex of `bytes`.
std::string HexOf(absl::string_view bytes);
// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);
// Lowercase hex HMAC-SHA-256 of `message` under `key`.
std::string HmacSha256Hex(absl::string_view key, absl::string_view message);
// `bytes` random bytes as lowercase hex; empty when none can be drawn.
std::string RandomHex(int bytes);
// a == b, in time that depends only on the lengths (for MACs and secrets).
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace loom

#endif  // LOOM_COMMON_CRYPTO_H_
