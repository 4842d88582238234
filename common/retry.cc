// File: common/retry.cc
#include "common/retry.h"

namespace loom {

bool IsRetryableOnAnotherDevice(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kNotFound:       // the device no longer serves the model
    case absl::StatusCode::kUnimplemented:  // its worker predates the call (e.g. Embed)
      return true;
    default:
      return false;
  }
}

}  // namespace loom
