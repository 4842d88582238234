// File: bench/scenario_heartbeats.cc
// Scenarios 5b and 6: the real coordinator's CPU while thousands of devices heartbeat over
// gRPC, and its memory at rest and with them registered.
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
#include "common/join_token.h"
#include "loom/v1/registry.grpc.pb.h"

namespace loom::bench {
// The real coordinator: memory at rest, then 10,000 devices registered over gRPC and
// heartbeating once a second; its CPU over that time, less its CPU at rest.
void MeasureHeartbeatsAndMemory(const BenchConfig& config, const Mesh& mesh, Results* r) {
  const int devices = config.devices;
  const double seconds = config.heartbeat_seconds;
  const pid_t pid = mesh.coordinator_pid();
  const long idle_rss = RssKb(pid);

  const double rest_start = CpuSeconds(pid);
  const auto rest_clock = SteadyClock::now();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double rest_rate = (CpuSeconds(pid) - rest_start) /
                           std::chrono::duration<double>(SteadyClock::now() - rest_clock).count();

  auto channel = grpc::CreateChannel(mesh.coordinator_address(), grpc::InsecureChannelCredentials());
  auto registry = v1::Registry::NewStub(channel);
  constexpr int kThreads = 8;
  std::vector<std::string> leases(devices);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < devices; i += kThreads) {
          grpc::ClientContext context;
          context.set_deadline(In(10));
          v1::RegisterResponse response;
          v1::RegisterRequest request = FakeDevice(i);
          *request.mutable_join() = MakeJoinProof(
              IssueJoinToken(mesh.join_secret, request.device_id(), request.provider_id()),
              request.device_id(), request.provider_id(), absl::Now());
          grpc::Status s = registry->Register(&context, request, &response);
          if (!s.ok()) Die("register: " + s.error_message());
          leases[i] = response.lease_id();
        }
      });
    }
    for (auto& t : threads) t.join();
  }

  std::atomic<long> sent{0};
  const double cpu_start = CpuSeconds(pid);
  const auto start = SteadyClock::now();
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // Thread t owns devices t, t+8, ...; each once a second, evenly spread.
        const int mine = (devices - t + kThreads - 1) / kThreads;
        const auto period = std::chrono::microseconds(1'000'000 / std::max(1, mine));
        for (long k = 0;; ++k) {
          const auto due = start + k * period;
          if (due - start >= std::chrono::duration<double>(seconds)) break;
          std::this_thread::sleep_until(due);
          const int i = t + static_cast<int>(k % mine) * kThreads;
          v1::HeartbeatRequest h;
          h.set_device_id(absl::StrCat("fake-", i));
          h.set_lease_id(leases[i]);
          h.mutable_load()->set_active(static_cast<int>(k % 4));
          h.mutable_load()->set_max_concurrency(4);
          grpc::ClientContext context;
          context.set_deadline(In(10));
          v1::HeartbeatResponse response;
          if (registry->Heartbeat(&context, h, &response).ok()) ++sent;
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  const double wall = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const double fraction = (CpuSeconds(pid) - cpu_start) / wall - rest_rate;
  const long rss_10k = RssKb(pid);
  r->j["selector"]["heartbeat_cpu_fraction"] = fraction;
  r->j["selector"]["heartbeats_per_s"] = sent.load() / wall;
  r->j["memory"] = {{"idle_rss_kb", idle_rss}, {"rss_10k_devices_kb", rss_10k}};
  Line(r, absl::StrFormat("heartbeats: %.0f/s from %d devices cost the coordinator %.1f%% of one "
                          "core (at rest: %.1f%%)",
                          sent.load() / wall, devices, 100 * fraction, 100 * rest_rate));
  Line(r, absl::StrFormat("  target <= 50%% of one core: %s", Verdict(fraction <= 0.5)));
  Line(r, absl::StrFormat("memory: coordinator RSS at rest %ld kB, with %d devices %ld kB (%.1f kB "
                          "per device)",
                          idle_rss, devices, rss_10k,
                          static_cast<double>(rss_10k - idle_rss) / std::max(1, devices)));
}

}  // namespace loom::bench
