#include "common/tls_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, tls_cert, "", "PEM certificate this process presents (server and client).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA that must have signed the servers this process dials.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA that must have signed every client's certificate (servers: mutual TLS).");
ABSL_FLAG(bool, plaintext, false,
          "Use no TLS at all (loopback demos and tests only; logs a warning).");

namespace loom {

TlsConfig TlsFromFlags(TlsConfig base) {
  auto take = [](std::string& field, const absl::Flag<std::string>& flag) {
    std::string value = absl::GetFlag(flag);
    if (!value.empty()) field = std::move(value);
  };
  take(base.cert, FLAGS_tls_cert);
  take(base.key, FLAGS_tls_key);
  take(base.ca, FLAGS_tls_ca);
  take(base.client_ca, FLAGS_tls_client_ca);
  if (absl::GetFlag(FLAGS_plaintext)) base.plaintext = true;
  return base;
}

}  // namespace loom
