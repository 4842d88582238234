#include "coordinator/registry.h"

#include "common/protocol.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

v1::RegisterRequest Advert(const std::string& device) {
  v1::RegisterRequest r;
  r.mutable_protocol_version()->set_major(kProtocolMajor);
  r.set_device_id(device);
  r.set_provider_id("p-" + device);
  r.set_address("127.0.0.1:1");
  auto* m = r.add_models();
  m->set_name("llama-3.1-8b");
  m->set_family("llama");
  r.mutable_load()->set_max_concurrency(4);
  return r;
}

class RegistryTest : public ::testing::Test {
 protected:
  SimulatedClock clock_;
  DeviceRegistry registry_{{.heartbeat_interval = absl::Seconds(1), .missed_heartbeats_to_expire = 3},
                           &clock_};
};

TEST_F(RegistryTest, RegisterGivesALeaseAndTheInterval) {
  auto lease = registry_.Register(Advert("a"));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_FALSE(lease->lease_id().empty());
  EXPECT_EQ(lease->heartbeat_interval_ms(), 1000);
  auto devices = registry_.Snapshot();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].state(), v1::DEVICE_STATE_HEALTHY);
  EXPECT_EQ(devices[0].provider_id(), "p-a");
}

TEST_F(RegistryTest, SilentDeviceTurnsSuspectThenExpires) {
  auto lease = registry_.Register(Advert("a"));
  ASSERT_TRUE(lease.ok());
  clock_.Advance(absl::Milliseconds(1400));
  EXPECT_EQ(registry_.Snapshot()[0].state(), v1::DEVICE_STATE_HEALTHY);
  clock_.Advance(absl::Milliseconds(200));
  EXPECT_EQ(registry_.Snapshot()[0].state(), v1::DEVICE_STATE_SUSPECT);
  clock_.Advance(absl::Milliseconds(1500));
  EXPECT_TRUE(registry_.Snapshot().empty());
  // The expired lease is told to register again.
  v1::HeartbeatRequest hb;
  hb.set_device_id("a");
  hb.set_lease_id(lease->lease_id());
  EXPECT_TRUE(registry_.Heartbeat(hb).reregister());
}

TEST_F(RegistryTest, HeartbeatsKeepADeviceAliveAndUpdateLoad) {
  auto lease = registry_.Register(Advert("a"));
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(absl::Seconds(1));
    v1::HeartbeatRequest hb;
    hb.set_device_id("a");
    hb.set_lease_id(lease->lease_id());
    hb.mutable_load()->set_active(i % 4);
    hb.mutable_load()->set_max_concurrency(4);
    EXPECT_FALSE(registry_.Heartbeat(hb).reregister());
  }
  auto devices = registry_.Snapshot();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].state(), v1::DEVICE_STATE_HEALTHY);
  EXPECT_EQ(devices[0].load().active(), 1);
}

TEST_F(RegistryTest, UnknownLeaseIsAskedToReregister) {
  v1::HeartbeatRequest hb;
  hb.set_device_id("ghost");
  hb.set_lease_id("nope");
  EXPECT_TRUE(registry_.Heartbeat(hb).reregister());
  auto lease = registry_.Register(Advert("a"));
  hb.set_device_id("a");  // right device, stale lease
  EXPECT_TRUE(registry_.Heartbeat(hb).reregister());
}

TEST_F(RegistryTest, ReregisteringReplacesTheLease) {
  auto first = registry_.Register(Advert("a"));
  auto second = registry_.Register(Advert("a"));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(first->lease_id(), second->lease_id());
  EXPECT_EQ(registry_.Snapshot().size(), 1u);
  v1::HeartbeatRequest hb;
  hb.set_device_id("a");
  hb.set_lease_id(first->lease_id());
  EXPECT_TRUE(registry_.Heartbeat(hb).reregister());
}

TEST_F(RegistryTest, DeregisterRemovesOnlyWithTheRightLease) {
  auto lease = registry_.Register(Advert("a"));
  v1::DeregisterRequest wrong;
  wrong.set_device_id("a");
  wrong.set_lease_id("other");
  EXPECT_EQ(registry_.Deregister(wrong).code(), absl::StatusCode::kNotFound);
  v1::DeregisterRequest right;
  right.set_device_id("a");
  right.set_lease_id(lease->lease_id());
  EXPECT_TRUE(registry_.Deregister(right).ok());
  EXPECT_TRUE(registry_.Snapshot().empty());
}

TEST_F(RegistryTest, ProtocolMajorMismatchIsRefusedClearly) {
  auto advert = Advert("a");
  advert.mutable_protocol_version()->set_major(kProtocolMajor + 1);
  auto lease = registry_.Register(advert);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(lease.status().message(), HasSubstr("protocol version"));
  EXPECT_TRUE(registry_.Snapshot().empty());
}

TEST_F(RegistryTest, MalformedAdvertisementsAreRefused) {
  auto no_models = Advert("a");
  no_models.clear_models();
  EXPECT_EQ(registry_.Register(no_models).status().code(), absl::StatusCode::kInvalidArgument);
  auto no_address = Advert("a");
  no_address.clear_address();
  EXPECT_EQ(registry_.Register(no_address).status().code(), absl::StatusCode::kInvalidArgument);
  auto dup = Advert("a");
  *dup.add_models() = dup.models(0);
  EXPECT_EQ(registry_.Register(dup).status().code(), absl::StatusCode::kInvalidArgument);
  auto too_many = Advert("a");
  for (int i = 0; i < 70; ++i) {
    auto* m = too_many.add_models();
    m->set_name("m" + std::to_string(i));
    m->set_family("llama");
  }
  EXPECT_EQ(registry_.Register(too_many).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(registry_.Snapshot().empty());
}

TEST_F(RegistryTest, InflightSurvivesReregistration) {
  ASSERT_TRUE(registry_.Register(Advert("a")).ok());
  registry_.AddInflight("a", 2);
  ASSERT_TRUE(registry_.Register(Advert("a")).ok());
  EXPECT_EQ(registry_.Snapshot()[0].coordinator_inflight(), 2);
  registry_.AddInflight("a", -2);
  EXPECT_EQ(registry_.Snapshot()[0].coordinator_inflight(), 0);
}

}  // namespace
}  // namespace loom
