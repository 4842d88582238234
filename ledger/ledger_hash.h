// File: ledger/ledger_hash.h
// What the ledgers' tamper evidence is made of, shared by every engine: the digest of a
// settlement's records and the canonical form of a transaction that its hash covers (hashed
// with common/crypto.h's Sha256Hex).
//
// Chain version 1 (SQLite rows written before schema 7) joins the fields with '|'; a reference
// or account holding '|' or '=' could make two different rows hash alike. Version 2 writes
// every field as its decimal length, ':', and its bytes, so the form is unambiguous for any
// bytes; the version itself is hashed first. The chain a transaction belongs to (PostgreSQL:
// one per coordinator instance and shard) is the caller's to hash, as a field of its own.
//
// Pure functions; thread-safe.
#ifndef LOOM_LEDGER_LEDGER_HASH_H_
#define LOOM_LEDGER_LEDGER_HASH_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/crypto.h"  // Sha256Hex, RandomHex
#include "loom/v1/common.pb.h"

namespace loom {

// (account, amount) of one transaction.
using Entries = std::vector<std::pair<std::string, int64_t>>;

inline constexpr int kChainVersion = 2;

// Device and provider ids, as the coordinator accepts them at registration (common/tls.h).
bool IsValidProviderId(absl::string_view id);

// A digest of a settlement's records, independent of their order (weights left out: they are
// derived and floating point; so are category and in_answer, routing statistics).
std::string RecordsDigest(const std::vector<v1::ContributionRecord>& records);

// What a transaction's hash covers; entries are sorted by account first, so the order they
// were written in does not matter.
std::string TxnCanonical(int version, const std::string& prev_hash, int64_t id,
                         const std::string& kind, const std::string& reference, int64_t amount,
                         int64_t created_ms, const std::string& digest, Entries entries);

}  // namespace loom

#endif  // LOOM_LEDGER_LEDGER_HASH_H_
