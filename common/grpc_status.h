// File: common/grpc_status.h
// The one converter between gRPC's status space and absl::Status. Codes map one to one (both
// use the canonical google.rpc codes), so retry decisions made on absl codes hold for statuses
// that crossed the wire.
#ifndef LOOM_COMMON_GRPC_STATUS_H_
#define LOOM_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace loom {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// True for the codes after which a request may be tried again on another device:
// UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, and INTERNAL/UNKNOWN/ABORTED from a peer.
bool IsRetryableOnAnotherDevice(const absl::Status& status);

}  // namespace loom

#endif  // LOOM_COMMON_GRPC_STATUS_H_
