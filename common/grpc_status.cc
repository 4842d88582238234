#include "common/grpc_status.h"

#include <string>

#include "common/utf8.h"

namespace loom {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      ToValidUtf8(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // A peer's message is foreign text: it may reach JSON and prompts, so it is made valid here.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      ToValidUtf8(status.error_message()));
}

}  // namespace loom
