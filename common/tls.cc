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

void ParseSubject(absl::string_view subject, PeerIdentity* identity) {
  // Our ids never contain ',' '=' '+' or escapes (IsValidId), so a plain split is exact for
  // the attributes we read; anything else in the subject is ignored.
  for (absl::string_view part : absl::StrSplit(subject, ',')) {
    size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    absl::string_view key = part.substr(0, eq);
    absl::string_view value = part.substr(eq + 1);
    if (key == "CN") identity->name = std::string(value);
    if (key == "OU") identity->role = std::string(value);
    if (key == "O") identity->org = std::string(value);
  }
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

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace loom
