#include "coordinator/mesh/device_auth.h"

#include "common/join_token.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loom {
namespace {

using ::testing::HasSubstr;

constexpr char kSecret[] = "00112233445566778899aabbccddeeff";

v1::RegisterRequest Register(const std::string& device, const std::string& provider) {
  v1::RegisterRequest r;
  r.set_device_id(device);
  r.set_provider_id(provider);
  return r;
}

PeerIdentity Cert(const std::string& name, const std::string& role, const std::string& org) {
  return {.verified = true, .name = name, .role = role, .org = org};
}

TEST(DeviceAuthTest, MutualTlsAcceptsOnlyTheCertifiedDeviceAndProvider) {
  SimulatedClock clock;
  DeviceAuth auth({.mode = DeviceAuthOptions::Mode::kMutualTls}, &clock);
  const auto r = Register("dev-a", "alice");
  EXPECT_TRUE(auth.CheckRegister(r, Cert("dev-a", "device", "alice")).ok());
  EXPECT_EQ(auth.CheckRegister(r, PeerIdentity{}).code(), absl::StatusCode::kUnauthenticated);
  auto other_device = auth.CheckRegister(r, Cert("dev-b", "device", "alice"));
  EXPECT_EQ(other_device.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other_device.message(), HasSubstr("'dev-b', not 'dev-a'"));
  auto other_provider = auth.CheckRegister(r, Cert("dev-a", "device", "mallory"));
  EXPECT_EQ(other_provider.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other_provider.message(), HasSubstr("provider 'mallory'"));
  // A client or coordinator certificate named like the device is not a device's.
  EXPECT_EQ(auth.CheckRegister(r, Cert("dev-a", "client", "alice")).code(),
            absl::StatusCode::kPermissionDenied);
  // Heartbeats and deregistration: only the device itself.
  EXPECT_TRUE(auth.CheckDevice("dev-a", Cert("dev-a", "device", "alice")).ok());
  EXPECT_EQ(auth.CheckDevice("dev-a", Cert("dev-b", "device", "bob")).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(DeviceAuthTest, JoinTokensRefuseMissingWrongStaleAndReplayedProofs) {
  SimulatedClock clock(absl::Now());
  DeviceAuth auth({.mode = DeviceAuthOptions::Mode::kJoinToken, .join_secret = kSecret}, &clock);
  auto r = Register("dev-a", "alice");
  EXPECT_EQ(auth.CheckRegister(r, {}).code(), absl::StatusCode::kUnauthenticated);  // no proof

  const std::string token = IssueJoinToken(kSecret, "dev-a", "alice");
  *r.mutable_join() = MakeJoinProof(token, "dev-a", "alice", clock.Now());
  EXPECT_TRUE(auth.CheckRegister(r, {}).ok());
  auto replayed = auth.CheckRegister(r, {});
  EXPECT_EQ(replayed.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(replayed.message(), HasSubstr("replayed"));

  auto wrong = Register("dev-a", "alice");
  *wrong.mutable_join() =
      MakeJoinProof(IssueJoinToken(kSecret, "dev-b", "alice"), "dev-a", "alice", clock.Now());
  EXPECT_EQ(auth.CheckRegister(wrong, {}).code(), absl::StatusCode::kUnauthenticated);

  auto stale = Register("dev-a", "alice");
  *stale.mutable_join() = MakeJoinProof(token, "dev-a", "alice", clock.Now() - absl::Minutes(6));
  EXPECT_THAT(auth.CheckRegister(stale, {}).message(), HasSubstr("clock"));

  // A replay stays refused for as long as its timestamp is acceptable, then the skew check
  // refuses it (the nonce has been forgotten by then).
  clock.Advance(absl::Minutes(4));
  EXPECT_EQ(auth.CheckRegister(r, {}).code(), absl::StatusCode::kPermissionDenied);
  clock.Advance(absl::Minutes(20));
  EXPECT_EQ(auth.CheckRegister(r, {}).code(), absl::StatusCode::kUnauthenticated);

  // Ids that cannot appear in certificates are refused before anything else.
  auto bad = Register("dev-a,OU=coordinator", "alice");
  EXPECT_EQ(auth.CheckRegister(bad, {}).code(), absl::StatusCode::kInvalidArgument);
}

// One valid token used for a flood of registrations fills its own device's window only:
// another device still registers (the report: 1,000,000 Registers closed the door to all).
TEST(DeviceAuthTest, TheNonceMemoryIsBoundedPerDevice) {
  SimulatedClock clock(absl::Now());
  DeviceAuth auth({.mode = DeviceAuthOptions::Mode::kJoinToken,
                   .join_secret = kSecret,
                   .max_nonces_per_device = 2},
                  &clock);
  const std::string token = IssueJoinToken(kSecret, "dev-a", "alice");
  auto fresh = [&] {
    auto r = Register("dev-a", "alice");
    *r.mutable_join() = MakeJoinProof(token, "dev-a", "alice", clock.Now());
    return r;
  };
  EXPECT_TRUE(auth.CheckRegister(fresh(), {}).ok());
  EXPECT_TRUE(auth.CheckRegister(fresh(), {}).ok());
  EXPECT_EQ(auth.CheckRegister(fresh(), {}).code(), absl::StatusCode::kResourceExhausted);
  auto other = Register("dev-b", "bob");
  *other.mutable_join() =
      MakeJoinProof(IssueJoinToken(kSecret, "dev-b", "bob"), "dev-b", "bob", clock.Now());
  EXPECT_TRUE(auth.CheckRegister(other, {}).ok()) << "another device is not locked out";
  clock.Advance(absl::Minutes(11));  // the remembered ones expire
  EXPECT_TRUE(auth.CheckRegister(fresh(), {}).ok());
}

}  // namespace
}  // namespace loom
