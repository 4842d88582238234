#include "coordinator/mesh/device_auth.h"

#include "absl/strings/str_cat.h"
#include "common/join_token.h"

namespace loom {

DeviceAuth::DeviceAuth(DeviceAuthOptions options, Clock* clock)
    : options_(std::move(options)), clock_(clock) {}

absl::Status DeviceAuth::CheckCertificate(const std::string& device_id,
                                          const std::string& provider_id,
                                          const PeerIdentity& peer) const {
  if (!peer.verified) {
    return absl::UnauthenticatedError(
        absl::StrCat("device ", device_id, ": no verified client certificate"));
  }
  if (peer.role != kRoleDevice) {
    return absl::PermissionDeniedError(absl::StrCat(
        "certificate of '", peer.name, "' has role '", peer.role, "', not a device's"));
  }
  if (peer.name != device_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "certificate is for device '", peer.name, "', not '", device_id, "'"));
  }
  if (!provider_id.empty() && peer.org != provider_id) {
    return absl::PermissionDeniedError(absl::StrCat("device ", device_id, " is certified for provider '",
                                                    peer.org, "', not '", provider_id, "'"));
  }
  return absl::OkStatus();
}

absl::Status DeviceAuth::CheckJoinProof(const v1::RegisterRequest& request) {
  const v1::JoinProof& proof = request.join();
  if (proof.mac().empty() || proof.nonce().empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "device ", request.device_id(), ": no join token (give the worker --join_token)"));
  }
  if (proof.nonce().size() > 64) return absl::InvalidArgumentError("join nonce too long");
  const absl::Time now = clock_->Now();
  const absl::Time stamped = absl::FromUnixMillis(proof.unix_ms());
  if (stamped < now - options_.max_clock_skew || stamped > now + options_.max_clock_skew) {
    return absl::UnauthenticatedError(absl::StrCat(
        "device ", request.device_id(), ": join proof is stamped ",
        absl::FormatDuration(now - stamped), " from the coordinator's clock (allowed ",
        absl::FormatDuration(options_.max_clock_skew), ")"));
  }
  if (!JoinProofMatches(options_.join_secret, request)) {
    return absl::UnauthenticatedError(absl::StrCat("the join token is not the one issued for device '",
                                                   request.device_id(), "' of provider '",
                                                   request.provider_id(), "'"));
  }
  absl::MutexLock lock(&mu_);
  NonceWindow& window = nonces_[request.device_id()];
  while (!window.expiry.empty() && window.expiry.front().first < now) {
    window.seen.erase(window.expiry.front().second);
    window.expiry.pop_front();
  }
  if (window.seen.count(proof.nonce())) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", request.device_id(), ": replayed join proof"));
  }
  if (window.seen.size() >= options_.max_nonces_per_device) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "device ", request.device_id(), " registered ", window.seen.size(),
        " times within the join window; try again later"));
  }
  // A proof stamped `stamped` is refused by the skew check after stamped + skew, so the nonce
  // need only be remembered until then.
  window.seen.insert(proof.nonce());
  window.expiry.emplace_back(std::max(now, stamped) + options_.max_clock_skew * 2, proof.nonce());
  return absl::OkStatus();
}

absl::Status DeviceAuth::CheckRegister(const v1::RegisterRequest& request,
                                       const PeerIdentity& peer) {
  if (!IsValidId(request.device_id()) || !IsValidId(request.provider_id())) {
    return absl::InvalidArgumentError(
        "device_id and provider_id must be 1-128 characters of A-Z a-z 0-9 . _ -");
  }
  if (options_.mode == DeviceAuthOptions::Mode::kMutualTls) {
    return CheckCertificate(request.device_id(), request.provider_id(), peer);
  }
  return CheckJoinProof(request);
}

absl::Status DeviceAuth::CheckDevice(const std::string& device_id, const PeerIdentity& peer) const {
  if (options_.mode == DeviceAuthOptions::Mode::kMutualTls) {
    return CheckCertificate(device_id, "", peer);
  }
  return absl::OkStatus();
}

}  // namespace loom
