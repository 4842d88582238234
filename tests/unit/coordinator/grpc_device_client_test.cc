#include "coordinator/mesh/grpc_device_client.h"

#include <string>
#include <string_view>

#include <grpcpp/security/credentials.h>

#include "common/clock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

// Nothing listens on these loopback ports, so each call fails fast with UNAVAILABLE; what is
// under test is which channels the client keeps.
absl::Status CallAt(GrpcDeviceClient& client, const std::string& address,
                    const std::string& device = "dev") {
  DeviceCall call;
  call.device_id = device;
  call.address = address;
  call.deadline = absl::Now() + absl::Seconds(30);
  return client.Infer(call, [](std::string_view) {}, nullptr).status();
}

TEST(GrpcDeviceClientTest, UnreachableWorkerIsUnavailable) {
  GrpcDeviceClient client(grpc::InsecureChannelCredentials(), /*tls=*/false);
  EXPECT_EQ(CallAt(client, "127.0.0.1:1").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.CachedChannels(), 1u);
}

TEST(GrpcDeviceClientTest, DropsChannelsIdleLongerThanTheTimeoutWhenANewDeviceAppears) {
  SimulatedClock clock;
  GrpcDeviceClient client(grpc::InsecureChannelCredentials(), /*tls=*/false, absl::Minutes(10),
                          &clock);
  (void)CallAt(client, "127.0.0.1:1");
  (void)CallAt(client, "127.0.0.1:2");
  EXPECT_EQ(client.CachedChannels(), 2u);

  clock.Advance(absl::Minutes(6));
  (void)CallAt(client, "127.0.0.1:2");  // reused, and now recently used
  EXPECT_EQ(client.CachedChannels(), 2u);

  clock.Advance(absl::Minutes(6));  // :1 idle for 12 minutes, :2 for 6
  (void)CallAt(client, "127.0.0.1:3");
  EXPECT_EQ(client.CachedChannels(), 2u) << ":1 should have been dropped, :2 and :3 kept";

  (void)CallAt(client, "127.0.0.1:1");  // comes back: a fresh channel
  EXPECT_EQ(client.CachedChannels(), 3u);
}

TEST(GrpcDeviceClientTest, UnderTlsEachDeviceAtAnAddressHasItsOwnChannel) {
  // With TLS the channel checks the worker's certificate names the device, so two devices that
  // were at one address (one replaced the other) must not share a channel.
  SimulatedClock clock;
  GrpcDeviceClient client(grpc::InsecureChannelCredentials(), /*tls=*/true, absl::Minutes(10),
                          &clock);
  (void)CallAt(client, "127.0.0.1:1", "dev-a");
  (void)CallAt(client, "127.0.0.1:1", "dev-b");
  (void)CallAt(client, "127.0.0.1:1", "dev-a");
  EXPECT_EQ(client.CachedChannels(), 2u);
}

}  // namespace
}  // namespace loom
