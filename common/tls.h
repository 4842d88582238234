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
#include "common/identity.h"

namespace loom {

// INVALID_ARGUMENT naming the flag when the combination is incomplete (neither TLS files nor
// plaintext, a cert without a key, ...); NOT_FOUND naming the file when one cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsConfig& tls);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsConfig& tls);

// Who is on the other end of a call, from its verified client certificate.
PeerIdentity PeerOf(const grpc::AuthContext& context);

}  // namespace loom

#endif  // LOOM_COMMON_TLS_H_
