// File: coordinator/mesh/device_auth.h
// Who may join the mesh as which device, and be paid into which provider account.
//
// Two modes, chosen by how the coordinator is started:
//  - mutual TLS (--tls_client_ca): the worker's verified client certificate names the device
//    (CN), its role (OU=device) and its provider account (O); Register, Heartbeat and
//    Deregister must come from that certificate.
//  - join tokens (no client certificates): Register must carry a JoinProof made with the token
//    issued for (device id, provider) under --join_secret_file, with a fresh nonce and a
//    timestamp within `max_clock_skew`. Heartbeat and Deregister are bound to the lease id
//    the Register returned.
//
// Refusals: UNAUTHENTICATED when no credential is presented or it does not match;
// PERMISSION_DENIED when a valid credential names another device, provider or role, or a
// proof is replayed. Nothing is registered on a refusal.
//
// Thread-safe.
#ifndef LOOM_COORDINATOR_MESH_DEVICE_AUTH_H_
#define LOOM_COORDINATOR_MESH_DEVICE_AUTH_H_

#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/identity.h"
#include "loom/v1/registry.pb.h"

namespace loom {

struct DeviceAuthOptions {
  enum class Mode { kMutualTls, kJoinToken };
  Mode mode = Mode::kJoinToken;
  std::string join_secret;  // kJoinToken
  absl::Duration max_clock_skew = absl::Minutes(5);
  // Nonces remembered per device (each device has its own window, so one token cannot close
  // registration to the others); beyond this, that device's Register is refused until some
  // expire. A worker registers once per start or lost lease, far fewer than this per window.
  size_t max_nonces_per_device = 1000;
};

class DeviceAuth {
 public:
  DeviceAuth(DeviceAuthOptions options, Clock* clock);

  absl::Status CheckRegister(const v1::RegisterRequest& request, const PeerIdentity& peer);
  // Heartbeat and Deregister: under mutual TLS the caller must hold `device_id`'s certificate.
  absl::Status CheckDevice(const std::string& device_id, const PeerIdentity& peer) const;

 private:
  absl::Status CheckCertificate(const std::string& device_id, const std::string& provider_id,
                                const PeerIdentity& peer) const;
  absl::Status CheckJoinProof(const v1::RegisterRequest& request);

  const DeviceAuthOptions options_;
  Clock* const clock_;

  absl::Mutex mu_;
  struct NonceWindow {
    std::unordered_set<std::string> seen;
    std::deque<std::pair<absl::Time, std::string>> expiry;  // oldest first
  };
  // By device id; only devices with a valid join proof get a window.
  std::unordered_map<std::string, NonceWindow> nonces_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_DEVICE_AUTH_H_
