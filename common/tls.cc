#include "common/tls.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace loom {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " ", path, ": cannot read the file"));
  std::ostringstream s;
  s << in.rdbuf();
  std::string pem = s.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, ": not a PEM file"));
  }
  return pem;
}

absl::Status CheckPair(const TlsConfig& tls) {
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const TlsConfig& tls) {
  if (tls.plaintext) {
    if (!tls.cert.empty() || !tls.client_ca.empty()) {
      return absl::InvalidArgumentError("--plaintext contradicts --tls_cert / --tls_client_ca");
    }
    return grpc::InsecureServerCredentials();
  }
  if (auto s = CheckPair(tls); !s.ok()) return s;
  if (tls.cert.empty()) {
    return absl::InvalidArgumentError(
        "no TLS certificate: give --tls_cert and --tls_key (see deploy/dev-certs.sh), or "
        "--plaintext to serve without encryption");
  }
  grpc::SslServerCredentialsOptions options;
  auto cert = ReadPem(tls.cert, "--tls_cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(tls.key, "--tls_key");
  if (!key.ok()) return key.status();
  options.pem_key_cert_pairs.push_back({*key, *cert});
  if (!tls.client_ca.empty()) {
    auto ca = ReadPem(tls.client_ca, "--tls_client_ca");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const TlsConfig& tls) {
  if (tls.plaintext) {
    if (!tls.cert.empty() || !tls.ca.empty()) {
      return absl::InvalidArgumentError("--plaintext contradicts --tls_cert / --tls_ca");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (auto s = CheckPair(tls); !s.ok()) return s;
  if (tls.ca.empty()) {
    return absl::InvalidArgumentError(
        "no TLS CA: give --tls_ca (the CA that signed the server's certificate, see "
        "deploy/dev-certs.sh), or --plaintext to connect without encryption");
  }
  grpc::SslCredentialsOptions options;
  auto ca = ReadPem(tls.ca, "--tls_ca");
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = *ca;
  if (!tls.cert.empty()) {
    auto cert = ReadPem(tls.cert, "--tls_cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(tls.key, "--tls_key");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *cert;
    options.pem_private_key = *key;
  }
  return grpc::SslCredentials(options);
}


PeerIdentity PeerOf(const grpc::AuthContext& context) {
  PeerIdentity identity;
  if (!context.IsPeerAuthenticated()) return identity;
  for (const grpc::string_ref& subject : context.FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME)) {
    ParseSubject(absl::string_view(subject.data(), subject.size()), &identity);
  }
  identity.verified = !identity.name.empty();
  return identity;
}


}  // namespace loom
