// File: common/join_token.h
// Join tokens: how a worker proves its device identity when TLS client certificates are not in
// use. The coordinator holds a secret; the token for a device is an HMAC of (device id,
// provider account) under it, so the coordinator can check any token without storing tokens,
// and a token for one device or provider is useless for another. The worker never sends the
// token: each Register carries a fresh nonce, a timestamp and an HMAC over both under the token
// (JoinProof), so a captured Register cannot be replayed.
//
//   std::string secret = *LoadOrCreateJoinSecret("join.secret");
//   std::string token = IssueJoinToken(secret, "laptop", "alice");   // give to the worker
//   *request.mutable_join() = MakeJoinProof(token, "laptop", "alice", absl::Now());
//   bool ok = JoinProofMatches(secret, request);                      // coordinator side
#ifndef LOOM_COMMON_JOIN_TOKEN_H_
#define LOOM_COMMON_JOIN_TOKEN_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loom/v1/registry.pb.h"

namespace loom {

// Reads the hex secret in `path`, creating it (32 random bytes, mode 0600) when missing.
// NOT_FOUND / INVALID_ARGUMENT naming the file when it cannot be read or created, or is not a
// secret.
absl::StatusOr<std::string> LoadOrCreateJoinSecret(const std::string& path);

std::string IssueJoinToken(absl::string_view secret, absl::string_view device_id,
                           absl::string_view provider_id);

v1::JoinProof MakeJoinProof(absl::string_view token, absl::string_view device_id,
                            absl::string_view provider_id, absl::Time now);

// Whether request.join() was made with the token `secret` issues for the request's device
// and provider (constant-time comparison). Says nothing about freshness or replay.
bool JoinProofMatches(absl::string_view secret, const v1::RegisterRequest& request);

// Dialling a worker, the coordinator sends a fresh random challenge (metadata
// "x-loom-challenge"); the worker answers in its initial metadata ("x-loom-proof") with an
// HMAC of the challenge and its device id under its token. Only the holder of that device's
// token can answer, so a device cannot advertise another worker's address and be paid for
// its work.
inline constexpr char kDialChallengeHeader[] = "x-loom-challenge";
inline constexpr char kDialProofHeader[] = "x-loom-proof";
std::string NewDialChallenge();
std::string DialProof(absl::string_view token, absl::string_view device_id,
                      absl::string_view challenge);
// Constant-time comparison against the proof `token` gives.
bool DialProofMatches(absl::string_view token, absl::string_view device_id,
                      absl::string_view challenge, absl::string_view proof);

}  // namespace loom

#endif  // LOOM_COMMON_JOIN_TOKEN_H_
