#include "common/grpc_status.h"
#include "common/retry.h"

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(GrpcStatusTest, RoundTripsEveryCodeAndMessage) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status original(static_cast<absl::StatusCode>(code), code ? "boom" : "");
    grpc::Status wire = ToGrpcStatus(original);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    EXPECT_EQ(FromGrpcStatus(wire), original);
  }
}

TEST(GrpcStatusTest, RetryDecisionFollowsTheCode) {
  EXPECT_TRUE(IsRetryableOnAnotherDevice(absl::UnavailableError("down")));
  EXPECT_TRUE(IsRetryableOnAnotherDevice(absl::ResourceExhaustedError("busy")));
  EXPECT_TRUE(IsRetryableOnAnotherDevice(absl::DeadlineExceededError("slow")));
  EXPECT_TRUE(IsRetryableOnAnotherDevice(absl::UnimplementedError("an older worker")));
  EXPECT_TRUE(IsRetryableOnAnotherDevice(absl::NotFoundError("model gone")));
  EXPECT_FALSE(IsRetryableOnAnotherDevice(absl::InvalidArgumentError("bad")));
  EXPECT_FALSE(IsRetryableOnAnotherDevice(absl::FailedPreconditionError("no")));
  EXPECT_FALSE(IsRetryableOnAnotherDevice(absl::CancelledError("client")));
}

}  // namespace
}  // namespace loom
