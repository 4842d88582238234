// File: common/tls_flags.h
// The TLS flags every networked Loom binary takes (--tls_cert, --tls_key, --tls_ca,
// --tls_client_ca, --plaintext), defined once here.
#ifndef LOOM_COMMON_TLS_FLAGS_H_
#define LOOM_COMMON_TLS_FLAGS_H_

#include "common/identity.h"

namespace loom {

// `base` (e.g. from a config file) with every flag given on the command line applied on top.
TlsConfig TlsFromFlags(TlsConfig base = {});

}  // namespace loom

#endif  // LOOM_COMMON_TLS_FLAGS_H_
