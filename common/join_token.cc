#include "common/join_token.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"

namespace loom {
namespace {

constexpr char kTokenPrefix[] = "ljt1.";

std::string ProofMessage(absl::string_view device_id, absl::string_view provider_id,
                         absl::string_view nonce, int64_t unix_ms) {
  return absl::StrCat("loom-register-v1|", device_id, "|", provider_id, "|", nonce, "|",
                      unix_ms);
}

}  // namespace

absl::StatusOr<std::string> LoadOrCreateJoinSecret(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd >= 0) {
    const std::string random = RandomHex(32);
    if (random.empty()) {
      close(fd);
      unlink(path.c_str());
      return absl::InternalError("no randomness for a join secret");
    }
    const std::string hex = absl::StrCat(random, "\n");
    const bool written = write(fd, hex.data(), hex.size()) == static_cast<ssize_t>(hex.size()) &&
                         fsync(fd) == 0;
    close(fd);
    if (!written) {
      unlink(path.c_str());
      return absl::InternalError(absl::StrCat("join secret ", path, ": cannot write"));
    }
  } else if (errno != EEXIST) {
    return absl::NotFoundError(
        absl::StrCat("join secret ", path, ": cannot create: ", std::strerror(errno)));
  }
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("join secret ", path, ": cannot read"));
  std::ostringstream s;
  s << in.rdbuf();
  std::string secret(absl::StripAsciiWhitespace(s.str()));
  if (secret.size() < 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("join secret ", path, ": expected at least 32 characters"));
  }
  return secret;
}

std::string IssueJoinToken(absl::string_view secret, absl::string_view device_id,
                           absl::string_view provider_id) {
  return absl::StrCat(kTokenPrefix,
                      HmacSha256Hex(secret, absl::StrCat("loom-join-v1|", device_id, "|", provider_id)));
}

v1::JoinProof MakeJoinProof(absl::string_view token, absl::string_view device_id,
                            absl::string_view provider_id, absl::Time now) {
  v1::JoinProof proof;
  proof.set_nonce(RandomHex(16));  // empty if no randomness: the coordinator refuses it
  proof.set_unix_ms(absl::ToUnixMillis(now));
  proof.set_mac(
      HmacSha256Hex(token, ProofMessage(device_id, provider_id, proof.nonce(), proof.unix_ms())));
  return proof;
}

bool JoinProofMatches(absl::string_view secret, const v1::RegisterRequest& request) {
  const std::string token = IssueJoinToken(secret, request.device_id(), request.provider_id());
  const std::string expected = HmacSha256Hex(
      token, ProofMessage(request.device_id(), request.provider_id(), request.join().nonce(),
                          request.join().unix_ms()));
  return ConstantTimeEquals(request.join().mac(), expected);
}

std::string NewDialChallenge() { return RandomHex(16); }

std::string DialProof(absl::string_view token, absl::string_view device_id,
                      absl::string_view challenge) {
  return HmacSha256Hex(token, absl::StrCat("loom-dial-v1|", device_id, "|", challenge));
}

bool DialProofMatches(absl::string_view token, absl::string_view device_id,
                      absl::string_view challenge, absl::string_view proof) {
  const std::string expected = DialProof(token, device_id, challenge);
  return ConstantTimeEquals(proof, expected);
}

}  // namespace loom
