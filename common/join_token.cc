#include "common/join_token.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace loom {
namespace {

constexpr char kTokenPrefix[] = "ljt1.";

std::string HmacHex(absl::string_view key, absl::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &length);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), length));
}

std::string ProofMessage(absl::string_view device_id, absl::string_view provider_id,
                         absl::string_view nonce, int64_t unix_ms) {
  return absl::StrCat("loom-register-v1|", device_id, "|", provider_id, "|", nonce, "|",
                      unix_ms);
}

}  // namespace

absl::StatusOr<std::string> LoadOrCreateJoinSecret(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd >= 0) {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
      close(fd);
      unlink(path.c_str());
      return absl::InternalError("no randomness for a join secret");
    }
    const std::string hex = absl::StrCat(
        absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), sizeof bytes)),
        "\n");
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
                      HmacHex(secret, absl::StrCat("loom-join-v1|", device_id, "|", provider_id)));
}

v1::JoinProof MakeJoinProof(absl::string_view token, absl::string_view device_id,
                            absl::string_view provider_id, absl::Time now) {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof bytes);
  v1::JoinProof proof;
  proof.set_nonce(
      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), sizeof bytes)));
  proof.set_unix_ms(absl::ToUnixMillis(now));
  proof.set_mac(
      HmacHex(token, ProofMessage(device_id, provider_id, proof.nonce(), proof.unix_ms())));
  return proof;
}

bool JoinProofMatches(absl::string_view secret, const v1::RegisterRequest& request) {
  const std::string token = IssueJoinToken(secret, request.device_id(), request.provider_id());
  const std::string expected = HmacHex(
      token, ProofMessage(request.device_id(), request.provider_id(), request.join().nonce(),
                          request.join().unix_ms()));
  const std::string& got = request.join().mac();
  return got.size() == expected.size() &&
         CRYPTO_memcmp(got.data(), expected.data(), expected.size()) == 0;
}

std::string NewDialChallenge() {
  unsigned char bytes[16];
  RAND_bytes(bytes, sizeof bytes);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), sizeof bytes));
}

std::string DialProof(absl::string_view token, absl::string_view device_id,
                      absl::string_view challenge) {
  return HmacHex(token, absl::StrCat("loom-dial-v1|", device_id, "|", challenge));
}

bool DialProofMatches(absl::string_view token, absl::string_view device_id,
                      absl::string_view challenge, absl::string_view proof) {
  const std::string expected = DialProof(token, device_id, challenge);
  return proof.size() == expected.size() &&
         CRYPTO_memcmp(proof.data(), expected.data(), expected.size()) == 0;
}

}  // namespace loom
