// File: common/grpc_status.h
// The one converter between gRPC's status space and absl::Status. Codes map one to one (both
// use the canonical google.rpc codes), so retry decisions made on absl codes (retry.h) hold for
// statuses that crossed the wire.
#ifndef LOOM_COMMON_GRPC_STATUS_H_
#define LOOM_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace loom {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Which of those codes a device call may be retried after: common/retry.h.

}  // namespace loom

#endif  // LOOM_COMMON_GRPC_STATUS_H_
