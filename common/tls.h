// File: common/tls.h
// Transport security for every gRPC link of Loom, and the peer identity a certificate carries.
//
// A Loom certificate names its holder in the subject: CN = the holder's name (a device id,
// "loom-coordinator", or a client name), OU = its role ("device", "coordinator" or "client")
// and, for devices, O = the provider account paid for the device. deploy/dev-certs.sh makes
// such certificates. Device certificates also carry the device id as a DNS name, which the
// coordinator checks when it dials a worker, so an address cannot be served by another device.
//
//   TlsConfig tls = {.cert = "dev1.crt", .key = "dev1.key", .ca = "ca.crt"};
//   auto creds = ChannelCredentialsFor(tls);            // verify the server, present dev1.crt
//   auto server_creds = ServerCredentialsFor(tls_with_client_ca);  // require client certs
//
// Plaintext is allowed only when TlsConfig::plaintext is set explicitly (a --plaintext flag),
// and the caller logs a warning.
#ifndef LOOM_COMMON_TLS_H_
#define LOOM_COMMON_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loom {

struct TlsConfig {
  std::string cert;       // PEM certificate chain this process presents
  std::string key;        // PEM private key of `cert`
  std::string client_ca;  // servers: require client certificates signed by this CA
  std::string ca;         // clients: verify the server against this CA
  bool plaintext = false;  // explicit opt-out of TLS
};

// INVALID_ARGUMENT naming the flag when the combination is incomplete (neither TLS files nor
// plaintext, a cert without a key, ...); NOT_FOUND naming the file when one cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsConfig& tls);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsConfig& tls);

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

PeerIdentity PeerOf(const grpc::AuthContext& context);

// Parses the RFC 2253 subject gRPC reports ("CN=dev1,OU=device,O=prov") into `identity`;
// exposed for tests.
void ParseSubject(absl::string_view subject, PeerIdentity* identity);

// Ids that name devices, providers and certificates: 1-128 characters of [A-Za-z0-9._-].
bool IsValidId(absl::string_view id);

}  // namespace loom

#endif  // LOOM_COMMON_TLS_H_
