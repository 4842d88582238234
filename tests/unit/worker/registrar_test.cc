#include "worker/registrar.h"

#include "common/clock.h"
#include "common/grpc_server.h"
#include "common/join_token.h"
#include "common/protocol.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/mesh/registry_service.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process_harness.h"

namespace loom {
namespace {

using ::loom::testing::WaitFor;

// A real Registry service in-process on loopback port 0, its registry on a simulated clock.
class RegistrarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = StartGrpcServer("127.0.0.1:0", {&service_}, grpc::InsecureServerCredentials());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(started->server);
    address_ = started->address;
  }
  void TearDown() override { StopGrpcServer(server_.get(), absl::Seconds(1)); }

  std::unique_ptr<Registrar> Make(unsigned major = kProtocolMajor,
                                  std::string token = IssueJoinToken(kSecret, "dev-a", "alice")) {
    return std::make_unique<Registrar>(
        RegistrarOptions{.coordinator = address_,
                         .join_token = std::move(token),
                         .initial_backoff = absl::Milliseconds(5)},
        [major] {
          v1::RegisterRequest r;
          r.mutable_protocol_version()->set_major(major);
          r.set_device_id("dev-a");
          r.set_provider_id("alice");
          r.set_address("127.0.0.1:1");
          auto* m = r.add_models();
          m->set_name("llama-3.1-8b");
          m->set_family("llama");
          return r;
        },
        [] {
          v1::DeviceLoad load;
          load.set_max_concurrency(4);
          return load;
        },
        [this](absl::Status s) {
          absl::MutexLock lock(&mu_);
          fatal_ = s;
        });
  }

  absl::Status fatal() {
    absl::MutexLock lock(&mu_);
    return fatal_;
  }

  SimulatedClock clock_;
  // 10 ms heartbeats keep the test short; the simulated clock decides expiry.
  static constexpr char kSecret[] = "0123456789abcdef0123456789abcdef";
  DeviceRegistry registry_{{.heartbeat_interval = absl::Milliseconds(10), .max_heartbeat_rate = 0},
                           &clock_};
  // Join proofs are stamped with the real time.
  DeviceAuth auth_{{.mode = DeviceAuthOptions::Mode::kJoinToken, .join_secret = kSecret},
                   Clock::Real()};
  RegistryService service_{&registry_, &auth_};
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  absl::Mutex mu_;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
};

TEST_F(RegistrarTest, RegistersRegistersAgainWhenForgottenAndDeregistersOnStop) {
  auto registrar = Make();
  registrar->Start();
  // The registry holds the device before the registrar has read the reply: wait for both.
  ASSERT_TRUE(WaitFor([&] { return registry_.Snapshot().size() == 1; }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return registrar->registrations() >= 1; }, absl::Seconds(10)));
  EXPECT_EQ(registrar->registrations(), 1);
  // The coordinator forgets the device (its lease expires): the next heartbeat is told to
  // register again, and the registrar does so by itself.
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(WaitFor([&] { return registrar->registrations() >= 2; }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return registry_.Snapshot().size() == 1; }, absl::Seconds(10)));
  registrar->Stop();
  EXPECT_TRUE(registry_.Snapshot().empty()) << "Stop deregisters";
  EXPECT_TRUE(fatal().ok());
}

TEST_F(RegistrarTest, PermanentRefusalIsReportedOnceAndStopsTrying) {
  auto registrar = Make(/*major=*/kProtocolMajor + 1);
  registrar->Start();
  ASSERT_TRUE(WaitFor([&] { return !fatal().ok(); }, absl::Seconds(10)));
  EXPECT_EQ(fatal().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(fatal().message(), ::testing::HasSubstr("protocol version"));
  EXPECT_FALSE(registrar->registered());
  EXPECT_TRUE(registry_.Snapshot().empty());
  registrar->Stop();
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

TEST_F(RegistrarTest, AWrongJoinTokenIsAPermanentRefusal) {
  auto registrar = Make(kProtocolMajor, IssueJoinToken(kSecret, "dev-b", "alice"));
  registrar->Start();
  ASSERT_TRUE(WaitFor([&] { return !fatal().ok(); }, absl::Seconds(10)));
  EXPECT_EQ(fatal().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(fatal().message()), ::testing::HasSubstr("dev-a"));
  EXPECT_TRUE(registry_.Snapshot().empty());
}

}  // namespace
}  // namespace loom
