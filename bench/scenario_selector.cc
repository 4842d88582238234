// File: bench/scenario_selector.cc
// Scenario 5a: selection among thousands of registered devices while they heartbeat, in
// process, with and without policies; and the fake devices the heartbeat run registers.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/scenarios.h"
#include "common/categories.h"
#include "common/clock.h"
#include "common/protocol.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/registry.h"

namespace loom::bench {
v1::RegisterRequest FakeDevice(int i) {
  static const std::pair<const char*, const char*> kModels[] = {
      {"qwen2.5-coder-7b", "qwen-coder"}, {"llama-3.1-8b", "llama"}, {"mistral-7b", "mistral"},
      {"qwen2.5-7b", "qwen"},             {"phi-3-mini", "phi"},     {"gemma-2-9b", "gemma"}};
  v1::RegisterRequest r;
  r.mutable_protocol_version()->set_major(kProtocolMajor);
  r.mutable_protocol_version()->set_minor(kProtocolMinor);
  r.set_device_id(absl::StrCat("fake-", i));
  r.set_provider_id(absl::StrCat("provider-", i % 500));
  r.set_address("127.0.0.1:9");  // never called: no request runs while they are registered
  auto* m = r.add_models();
  m->set_name(kModels[i % 6].first);
  m->set_family(kModels[i % 6].second);
  m->set_parameters_b(7);
  r.mutable_load()->set_max_concurrency(4);
  r.mutable_load()->set_active(i % 4);
  r.mutable_load()->set_tokens_per_second(10 + i % 90);
  // What policies select on: four regions (carbon from the table below), a third of the
  // providers at each trust tier.
  static const char* kRegions[] = {"eu-west", "eu-north", "us-east", "ap-south"};
  r.set_region(kRegions[(i / 6) % 4]);
  r.set_simulated(true);
  return r;
}

RegistryOptions FakeMeshOptions() {
  RegistryOptions o;
  for (int p = 0; p < 500; ++p) {
    o.provider_trust[absl::StrCat("provider-", p)] =
        p % 3 == 0 ? v1::TRUST_TIER_OWNED : p % 3 == 1 ? v1::TRUST_TIER_VERIFIED : v1::TRUST_TIER_COMMUNITY;
  }
  o.carbon_by_region = {{"eu-west", 250}, {"eu-north", 30}, {"us-east", 400}, {"ap-south", 700}};
  return o;
}

// Selection inside the process, on the registry the coordinator uses, while every device
// heartbeats once a second from another thread.
void MeasureSelector(const BenchConfig& config, Results* r) {
  const int devices = config.devices;
  spdlog::set_level(spdlog::level::warn);
  DeviceRegistry registry(FakeMeshOptions(), Clock::Real());
  std::vector<v1::HeartbeatRequest> beats;
  for (int i = 0; i < devices; ++i) {
    auto lease = registry.Register(FakeDevice(i));
    if (!lease.ok()) Die(lease.status().ToString());
    v1::HeartbeatRequest& h = beats.emplace_back();
    h.set_device_id(absl::StrCat("fake-", i));
    h.set_lease_id(lease->lease_id());
    h.mutable_load()->set_max_concurrency(4);
    h.mutable_load()->set_tokens_per_second(10 + i % 90);
  }
  std::atomic<bool> stop{false};
  std::thread heartbeats([&] {
    // The mesh is gone by now: the heartbeats get CPU 0, the selections keep CPU 1.
    if (config.pin) PinTo(0);
    const auto start = SteadyClock::now();
    for (long k = 0; !stop.load(); ++k) {
      v1::HeartbeatRequest& h = beats[k % beats.size()];
      h.mutable_load()->set_active(static_cast<int>(k % 4));
      (void)registry.Heartbeat(h);  // the load it reports is all the selector needs
      std::this_thread::sleep_until(start + std::chrono::microseconds(k * 1'000'000 / devices));
    }
  });
  const ModelSelector selector;
  // The same selections without a policy, with hard limits (loom-private's trust, two of the
  // four regions, a speed floor) and with soft weights (loom-green's), interleaved so that the
  // three see the same heartbeat traffic.
  SelectionPolicy limits;
  limits.name = "limits";
  limits.min_trust = v1::TRUST_TIER_VERIFIED;
  limits.regions = {"eu-north", "eu-west"};
  limits.min_tokens_per_s = 20;
  SelectionPolicy weights;
  weights.name = "weights";
  weights.weights = {1.0 / 3, 0, 0, 2.0 / 3};
  const std::pair<const char*, const SelectionPolicy*> kRuns[] = {
      {"none", nullptr}, {"limits", &limits}, {"weights", &weights}};
  std::mt19937 rng(1);
  std::vector<double> us[3];
  for (int i = 0; i < 300'000; ++i) {
    const int run = i % 3;
    const v1::TaskCategory category = kAllCategories[rng() % kAllCategories.size()];
    const auto start = SteadyClock::now();
    auto s = selector.SelectForCategories(registry, {category}, {}, kRuns[run].second);
    us[run].push_back(Us(SteadyClock::now() - start));
    if (!s.ok()) Die(s.status().ToString());
  }
  stop = true;
  heartbeats.join();
  const Percentiles p = Of(us[0]);
  // Fields, not the object: the heartbeat run wrote its figures into it before.
  r->j["selector"]["devices"] = devices;
  r->j["selector"]["p50_us"] = p.p50;
  r->j["selector"]["p99_us"] = p.p99;
  Line(r, absl::StrFormat("selector, %d devices heartbeating: p50 %.2f  p99 %.2f", devices, p.p50,
                          p.p99));
  bool met = p.p99 <= 20;
  for (int run = 1; run < 3; ++run) {
    const Percentiles q = Of(us[run]);
    r->j["selector"]["policy"][kRuns[run].first] = {{"p50_us", q.p50}, {"p99_us", q.p99}};
    Line(r, absl::StrFormat("  with policy %-8s p50 %.2f  p99 %.2f (%.2fx none at p99)",
                            kRuns[run].first, q.p50, q.p99, q.p99 / std::max(p.p99, 1e-9)));
    met = met && q.p99 <= 20;
  }
  Line(r, absl::StrFormat("  target p99 <= 20 with and without policies: %s", Verdict(met)));
}

}  // namespace loom::bench
