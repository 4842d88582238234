#include "coordinator/mesh/registry.h"

#include <cmath>
#include <functional>
#include <map>

#include <random>
#include <tuple>

#include "common/categories.h"
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
  // No heartbeat rate limit here: these tests heartbeat without time passing.
  DeviceRegistry registry_{{.heartbeat_interval = absl::Seconds(1),
                            .missed_heartbeats_to_expire = 3,
                            .max_heartbeat_rate = 0},
                           &clock_};
};

TEST(RegistryPolicyTest, TrustIsTheOperatorsWordAndRegionAndCarbonTheDevicesOrTheTables) {
  SimulatedClock clock;
  RegistryOptions options;
  options.provider_trust = {{"p-owned", v1::TRUST_TIER_OWNED}};
  options.default_trust = v1::TRUST_TIER_COMMUNITY;
  options.carbon_by_region = {{"eu-north", 30}};
  DeviceRegistry registry(options, &clock);
  v1::RegisterRequest north = Advert("north");
  north.set_region("eu-north");  // no declared intensity: the region's
  v1::RegisterRequest declared = Advert("declared");
  declared.set_region("eu-north");
  declared.set_carbon_g_per_kwh(450);  // a declaration wins over the table
  v1::RegisterRequest old = Advert("old");  // a worker that predates policies sends neither
  for (const auto* r : {&north, &declared, &old}) ASSERT_TRUE(registry.Register(*r).ok());
  std::map<std::string, v1::DeviceInfo> by_id;
  for (const auto& d : registry.Snapshot()) by_id[d.device_id()] = d;
  EXPECT_EQ(by_id["north"].trust(), v1::TRUST_TIER_COMMUNITY);  // providers not listed
  EXPECT_DOUBLE_EQ(by_id["north"].carbon_g_per_kwh(), 30);
  EXPECT_DOUBLE_EQ(by_id["declared"].carbon_g_per_kwh(), 450);
  EXPECT_EQ(by_id["old"].region(), "");
  EXPECT_DOUBLE_EQ(by_id["old"].carbon_g_per_kwh(), 0);
  v1::RegisterRequest mine = Advert("mine");
  mine.set_provider_id("p-owned");
  ASSERT_TRUE(registry.Register(mine).ok());
  for (const auto& d : registry.Snapshot()) {
    if (d.device_id() == "mine") {
      EXPECT_EQ(d.trust(), v1::TRUST_TIER_OWNED);
    }
  }
  v1::RegisterRequest bad = Advert("bad");
  bad.set_region("EU West");
  EXPECT_THAT(registry.Register(bad).status().message(), HasSubstr("region"));
  bad.set_region("eu-west");
  bad.set_carbon_g_per_kwh(-1);
  EXPECT_THAT(registry.Register(bad).status().message(), HasSubstr("carbon_g_per_kwh"));
}

TEST(RegistryPolicyTest, AttemptsFeedTheMeasuredFiguresAndTheySurviveReregistration) {
  SimulatedClock clock;
  DeviceRegistry registry({}, &clock);
  ASSERT_TRUE(registry.Register(Advert("a")).ok());
  registry.RecordAttempt("a", true, absl::Milliseconds(100));
  EXPECT_DOUBLE_EQ(registry.Snapshot()[0].observed_ttft_ms(), 100);  // the first counts fully
  registry.RecordAttempt("a", true, absl::Milliseconds(200));
  EXPECT_NEAR(registry.Snapshot()[0].observed_ttft_ms(), 120, 1e-9);  // then a fifth
  registry.RecordAttempt("a", false, absl::ZeroDuration());
  const v1::DeviceInfo d = registry.Snapshot()[0];
  EXPECT_NEAR(d.observed_ttft_ms(), 120, 1e-9);  // a failure says nothing of the first token
  EXPECT_GT(d.failure_rate(), 0.3);
  EXPECT_LT(d.failure_rate(), 0.34);  // 1/3 after three: the first observations count fully
  EXPECT_EQ(d.observed_attempts(), 3);
  ASSERT_TRUE(registry.Register(Advert("a")).ok());
  EXPECT_EQ(registry.Snapshot()[0].observed_attempts(), 3);
  registry.RecordAttempt("gone", true, absl::Milliseconds(5));  // unknown device: ignored
}

TEST(RegistryLimitsTest, HeartbeatsFasterThanTheRateAreRefusedAndNotRecorded) {
  SimulatedClock clock;
  DeviceRegistry registry({.heartbeat_interval = absl::Seconds(1), .max_heartbeat_rate = 4},
                          &clock);
  auto lease = registry.Register(Advert("a"));
  ASSERT_TRUE(lease.ok());
  v1::HeartbeatRequest hb;
  hb.set_device_id("a");
  hb.set_lease_id(lease->lease_id());
  hb.mutable_load()->set_active(1);
  ASSERT_TRUE(registry.Heartbeat(hb).ok());
  clock.Advance(absl::Milliseconds(100));  // under 1 s / 4
  hb.mutable_load()->set_active(3);
  auto flood = registry.Heartbeat(hb);
  EXPECT_EQ(flood.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(flood.status().message(), HasSubstr("more often than every 250ms"));
  EXPECT_EQ(registry.Snapshot()[0].load().active(), 1);  // the refused load was not recorded
  clock.Advance(absl::Milliseconds(200));
  EXPECT_TRUE(registry.Heartbeat(hb).ok());
  EXPECT_EQ(registry.Snapshot()[0].load().active(), 3);
}

TEST(RegistryLimitsTest, AdvertisementLimitsAreRefusedWithoutRegistering) {
  SimulatedClock clock;
  DeviceRegistry registry({.max_models_per_device = 2}, &clock);
  v1::RegisterRequest many = Advert("a");
  for (const char* name : {"m2", "m3"}) {
    auto* m = many.add_models();
    m->set_name(name);
    m->set_family("llama");
  }
  EXPECT_EQ(registry.Register(many).status().code(), absl::StatusCode::kInvalidArgument);
  v1::RegisterRequest long_name = Advert("a");
  long_name.mutable_models(0)->set_name(std::string(129, 'x'));
  EXPECT_EQ(registry.Register(long_name).status().code(), absl::StatusCode::kInvalidArgument);
  v1::RegisterRequest bad_id = Advert("a,OU=coordinator");
  EXPECT_EQ(registry.Register(bad_id).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(registry.Snapshot().empty());
}

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
  EXPECT_TRUE(registry_.Heartbeat(hb)->reregister());
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
    EXPECT_FALSE(registry_.Heartbeat(hb)->reregister());
  }
  auto devices = registry_.Snapshot();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].state(), v1::DEVICE_STATE_HEALTHY);
  EXPECT_EQ(devices[0].load().active(), 1);
}

// The hostile-device report: heartbeats with negative load won every selection (20 of 20).
TEST_F(RegistryTest, ImpossibleLoadReportsAreRefusedAndOverfullOnesCountAsFull) {
  auto lease = registry_.Register(Advert("a"));
  v1::HeartbeatRequest hb;
  hb.set_device_id("a");
  hb.set_lease_id(lease->lease_id());
  hb.mutable_load()->set_max_concurrency(4);
  for (auto bad : std::vector<std::function<void(v1::DeviceLoad*)>>{
           [](v1::DeviceLoad* l) { l->set_active(-5); },
           [](v1::DeviceLoad* l) { l->set_queued(-1); },
           [](v1::DeviceLoad* l) { l->set_tokens_per_second(-3); },
           [](v1::DeviceLoad* l) { l->set_tokens_per_second(std::nan("")); }}) {
    clock_.Advance(absl::Milliseconds(300));
    v1::HeartbeatRequest lying = hb;
    bad(lying.mutable_load());
    EXPECT_EQ(registry_.Heartbeat(lying).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(registry_.Snapshot()[0].load().active(), 0) << "nothing recorded from them";
  clock_.Advance(absl::Milliseconds(300));
  hb.mutable_load()->set_active(40);
  ASSERT_TRUE(registry_.Heartbeat(hb).ok());
  EXPECT_EQ(registry_.Snapshot()[0].load().active(), 4);
}

// The report: one device at 10^9 micro-credits per 1k made every client get 402, and one at
// INT64_MAX overflowed the reservation to 0. Prices above the operator's cap are refused.
TEST_F(RegistryTest, PricesAboveTheOperatorsCapAreRefusedAtRegister) {
  for (int64_t price : {int64_t{1'000'000'000}, INT64_MAX}) {
    v1::RegisterRequest r = Advert("greedy");
    r.mutable_models(0)->set_price_per_1k_micro(price);
    auto refused = registry_.Register(r);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << price;
    EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("--max_price_per_1k")) << price;
  }
  v1::RegisterRequest fair = Advert("fair");
  fair.mutable_models(0)->set_price_per_1k_micro(100 * 1'000'000);  // exactly the default cap
  EXPECT_TRUE(registry_.Register(fair).ok());
  EXPECT_EQ(registry_.Size(), 1u);
}

TEST_F(RegistryTest, UnknownLeaseIsAskedToReregister) {
  v1::HeartbeatRequest hb;
  hb.set_device_id("ghost");
  hb.set_lease_id("nope");
  EXPECT_TRUE(registry_.Heartbeat(hb)->reregister());
  auto lease = registry_.Register(Advert("a"));
  hb.set_device_id("a");  // right device, stale lease
  EXPECT_TRUE(registry_.Heartbeat(hb)->reregister());
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
  EXPECT_TRUE(registry_.Heartbeat(hb)->reregister());
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

// The oracle for the registry's index: every healthy, non-excluded device and model of a
// snapshot scored directly (affinity - 0.6 x load), best by (score, larger model, device id,
// model name). Written without the selector's grouping, so a stale index key shows up here.
std::tuple<std::string, std::string> BruteForceBest(const std::vector<v1::DeviceInfo>& devices,
                                                    const std::vector<v1::TaskCategory>& categories,
                                                    const std::set<std::string>& excluded) {
  const AffinityTable table = AffinityTable::Defaults();
  std::tuple<double, double, std::string, std::string> best{1e9, 0, "", ""};
  for (const auto& d : devices) {
    if (d.state() != v1::DEVICE_STATE_HEALTHY || excluded.count(d.device_id())) continue;
    const int busy = std::max(d.load().active(), d.coordinator_inflight()) + d.load().queued();
    const double load = static_cast<double>(busy) / std::max(1, d.load().max_concurrency());
    for (const auto& m : d.models()) {
      double affinity = 0;
      for (auto c : categories) affinity = std::max(affinity, table.Score(m, c));
      best = std::min(best, std::make_tuple(-(affinity - 0.6 * load), -m.parameters_b(),
                                            d.device_id(), m.name()));
    }
  }
  return {std::get<2>(best), std::get<3>(best)};
}

TEST_F(RegistryTest, IndexedSelectionMatchesScoringEverySnapshotDevice) {
  const ModelSelector selector;
  std::mt19937 rng(7);
  const std::vector<std::pair<std::string, std::string>> models = {
      {"qwen2.5-coder-7b", "qwen-coder"}, {"llama-3.1-8b", "llama"}, {"mistral-7b", "mistral"},
      {"phi-3", "phi"}, {"gemma-2", "gemma"}};
  std::map<std::string, std::string> leases;
  for (int step = 0; step < 3000; ++step) {
    const std::string id = "d" + std::to_string(rng() % 40);
    switch (rng() % 6) {
      case 0: {  // (re)register with one or two models
        v1::RegisterRequest r = Advert(id);
        r.clear_models();
        const size_t first = rng() % models.size();
        for (size_t k = 0; k < 1 + rng() % 2; ++k) {
          auto* m = r.add_models();
          m->set_name(models[(first + k) % models.size()].first);
          m->set_family(models[(first + k) % models.size()].second);
          m->set_parameters_b(7 + rng() % 2);
        }
        r.mutable_load()->set_max_concurrency(1 + rng() % 4);
        auto lease = registry_.Register(r);
        ASSERT_TRUE(lease.ok()) << lease.status();
        leases[id] = lease->lease_id();
        break;
      }
      case 1:
      case 2: {  // heartbeat with a new load
        if (!leases.count(id)) break;
        v1::HeartbeatRequest h;
        h.set_device_id(id);
        h.set_lease_id(leases[id]);
        h.mutable_load()->set_active(rng() % 4);
        h.mutable_load()->set_queued(rng() % 2);
        (void)registry_.Heartbeat(h);  // a lease may have expired meanwhile: either way is fine
        break;
      }
      case 3:  // an attempt starts or ends
        registry_.AddInflight(id, rng() % 2 ? 1 : -1);
        break;
      case 4:  // time passes: devices turn suspect and expire
        clock_.Advance(absl::Milliseconds(rng() % 700));
        break;
      case 5: {
        if (!leases.count(id) || rng() % 4) break;
        v1::DeregisterRequest d;
        d.set_device_id(id);
        d.set_lease_id(leases[id]);
        (void)registry_.Deregister(d);
        leases.erase(id);
        break;
      }
    }
    const std::vector<v1::TaskCategory> categories = {
        kAllCategories[rng() % kAllCategories.size()], kAllCategories[rng() % kAllCategories.size()]};
    std::set<std::string> excluded;
    if (rng() % 2) excluded.insert("d" + std::to_string(rng() % 40));
    const std::vector<v1::DeviceInfo> snapshot = registry_.Snapshot();
    const auto [want_device, want_model] = BruteForceBest(snapshot, categories, excluded);
    absl::StatusOr<Selection> got = selector.SelectForCategories(registry_, categories, excluded);
    if (want_device.empty()) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << "step " << step;
    } else {
      ASSERT_TRUE(got.ok()) << "step " << step << ": " << got.status();
      ASSERT_EQ(std::make_tuple(got->device_id, got->model.name()),
                std::make_tuple(want_device, want_model))
          << "step " << step << ": " << got->reason;
    }
    EXPECT_EQ(registry_.Size(), static_cast<int>(snapshot.size()));
  }
}

TEST_F(RegistryTest, ExpiryDropsOnlyTheSilentDevicesFromSelection) {
  ASSERT_TRUE(registry_.Register(Advert("a")).ok());
  clock_.Advance(absl::Seconds(2));
  auto b = registry_.Register(Advert("b"));
  ASSERT_TRUE(b.ok());
  // a is SUSPECT now: never chosen, though still listed.
  EXPECT_EQ(ModelSelector().SelectPassthrough(registry_, {.model = "llama-3.1-8b"}, {})->device_id,
            "b");
  EXPECT_EQ(registry_.Size(), 2);
  clock_.Advance(absl::Milliseconds(1500));  // a silent 3.5 s: expired; b 1.5 s: healthy
  EXPECT_EQ(registry_.Size(), 1);
  clock_.Advance(absl::Seconds(1));  // b silent 2.5 s: suspect, still serving
  auto none_healthy = ModelSelector().SelectPassthrough(registry_, {.model = "llama-3.1-8b"}, {});
  EXPECT_EQ(none_healthy.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(none_healthy.status().message(), HasSubstr("1 serving"));
  clock_.Advance(absl::Seconds(1));  // b expired too
  EXPECT_EQ(registry_.Size(), 0);
  EXPECT_THAT(ModelSelector().SelectPassthrough(registry_, {.model = "llama-3.1-8b"}, {})
                  .status()
                  .message(),
              HasSubstr("no devices in the mesh"));
}

}  // namespace
}  // namespace loom

namespace loom {
namespace {

// A worker whose model server cannot serve says so in its load; the device stays listed, as
// suspect with the reason, and gets healthy again with the first report without one.
TEST(RegistryUpstreamTest, ADeviceWhoseModelServerCannotServeIsSuspectUntilItCan) {
  SimulatedClock clock;
  DeviceRegistry registry({.heartbeat_interval = absl::Seconds(1), .max_heartbeat_rate = 0}, &clock);
  v1::RegisterRequest advert = Advert("a");
  advert.mutable_load()->set_upstream_problem(std::string(400, 'x') + "\xFF");
  auto lease = registry.Register(advert);
  ASSERT_TRUE(lease.ok()) << lease.status();
  std::vector<v1::DeviceInfo> devices = registry.Snapshot();
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_EQ(devices[0].state(), v1::DEVICE_STATE_SUSPECT);
  EXPECT_LE(devices[0].load().upstream_problem().size(), 303u) << "bounded";
  int healthy_seen = 0;
  registry.Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) {
      g->ForEachHealthy([&](const v1::DeviceInfo&, double) { ++healthy_seen; return true; });
    }
  });
  EXPECT_EQ(healthy_seen, 0) << "no work for it";

  v1::HeartbeatRequest hb;
  hb.set_device_id("a");
  hb.set_lease_id(lease->lease_id());
  hb.mutable_load()->set_max_concurrency(4);
  ASSERT_TRUE(registry.Heartbeat(hb).ok());
  devices = registry.Snapshot();
  EXPECT_EQ(devices[0].state(), v1::DEVICE_STATE_HEALTHY);
  EXPECT_EQ(devices[0].load().upstream_problem(), "");
}

}  // namespace
}  // namespace loom
