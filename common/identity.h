// File: common/identity.h
// Who is who in a Loom mesh, without any transport: the TLS files a process is configured with,
// the roles certificates name, the identity a verified peer carries, and valid ids. The gRPC
// credentials built from them are common/tls.h's (the RPC library); domain code needs only this.
//
// A Loom certificate names its holder in the subject: CN = the holder's name (a device id,
// "loom-coordinator", or a client name), OU = its role ("device", "coordinator" or "client")
// and, for devices, O = the provider account paid for the device.
//
// Pure data and functions; thread-safe.
#ifndef LOOM_COMMON_IDENTITY_H_
#define LOOM_COMMON_IDENTITY_H_

#include <string>

#include "absl/strings/string_view.h"

namespace loom {

struct TlsConfig {
  std::string cert;       // PEM certificate chain this process presents
  std::string key;        // PEM private key of `cert`
  std::string client_ca;  // servers: require client certificates signed by this CA
  std::string ca;         // clients: verify the server against this CA
  bool plaintext = false;  // explicit opt-out of TLS
};

// Names checked by the roles' certificates.
inline constexpr char kRoleDevice[] = "device";
inline constexpr char kRoleCoordinator[] = "coordinator";
inline constexpr char kRoleClient[] = "client";

// Who is on the other end of a call, from its verified client certificate.
struct PeerIdentity {
  bool verified = false;  // a client certificate was presented and verified
  std::string name;       // CN
  std::string role;       // OU
  std::string org;        // O (a device's provider account)
};

// Parses the RFC 2253 subject gRPC reports ("CN=dev1,OU=device,O=prov") into `identity`;
// exposed for tests.
void ParseSubject(absl::string_view subject, PeerIdentity* identity);

// Ids that name devices, providers and certificates: 1-128 characters of [A-Za-z0-9._-].
bool IsValidId(absl::string_view id);

}  // namespace loom

#endif  // LOOM_COMMON_IDENTITY_H_
