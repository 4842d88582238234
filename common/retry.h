// File: common/retry.h
// The one retry table: which failures of a device call may be tried again on another device.
// Codes are absl's, which map one to one to gRPC's (grpc_status.h), so the rule holds for a
// status that crossed the wire; no gRPC type is needed to ask.
#ifndef LOOM_COMMON_RETRY_H_
#define LOOM_COMMON_RETRY_H_

#include "absl/status/status.h"

namespace loom {

// True for UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, INTERNAL / UNKNOWN / ABORTED
// from a peer, NOT_FOUND (the device no longer serves the model) and UNIMPLEMENTED (its worker
// predates the call). Chat calls and embeddings both use it.
bool IsRetryableOnAnotherDevice(const absl::Status& status);

}  // namespace loom

#endif  // LOOM_COMMON_RETRY_H_
