// File: bench/scenario_hops.cc
// Scenario 1-2: the raw hop to a worker, the bare proxies, and passthrough through the
// coordinator beside them (latency, saturation, CPU per request, the coordinator's own time).
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
#include "loom/v1/orchestrator.grpc.pb.h"
#include "loom/v1/worker.grpc.pb.h"

namespace loom::bench {
namespace {

// One streamed Infer straight to a worker (or to anything that speaks the Worker service).
class InferCall {
 public:
  InferCall() {
    infer_.set_request_id("bench");
    infer_.set_sub_task_id("raw");
    infer_.set_attempt(1);
    infer_.set_model(kPinnedModel);
    *infer_.add_messages() = User(kPassthroughPrompt);
    infer_.set_max_tokens(kAnswerTokens);
  }
  void operator()(v1::Worker::Stub* stub) const {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    auto reader = stub->Infer(&context, infer_);
    v1::InferChunk chunk;
    while (reader->Read(&chunk)) {
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) Die(absl::StrCat("Infer via ", context.peer(), " failed: ", status.error_message()));
  }

 private:
  v1::InferRequest infer_;
};

struct RawHop {
  Percentiles latency;
  double rps = 0;
  double worker_cpu_us = 0;
};

RawHop MeasureRawHop(const BenchConfig& config, const Mesh& mesh, const InferCall& infer,
                     Results* r) {
  auto worker = v1::Worker::NewStub(
      grpc::CreateChannel(mesh.worker_address, grpc::InsecureChannelCredentials()));
  auto call = [&] { infer(worker.get()); };
  RawHop raw;
  raw.latency = Of(Sequential(config.requests, call));
  const Saturated sat = SaturationWithCpu(config.inflight, config.seconds, call,
                                          {mesh.coordinator_pid(), mesh.worker_pid});
  raw.rps = sat.rps;
  raw.worker_cpu_us = sat.cpu_us[1];
  r->j["raw_hop"] = {{"p50_us", raw.latency.p50}, {"p99_us", raw.latency.p99}, {"rps", raw.rps},
                     {"worker_cpu_us", raw.worker_cpu_us}};
  Line(r, absl::StrFormat("raw hop (client -> worker Infer)      p50 %7.0f  p99 %7.0f  %7.0f req/s",
                          raw.latency.p50, raw.latency.p99, raw.rps));
  return raw;
}

// The floor for any hop in between: a proxy that only forwards (bench/bare_proxy.cc).
void MeasureBareProxies(const BenchConfig& config, const Mesh& mesh, const InferCall& infer,
                        const RawHop& raw, Results* r) {
  for (const auto& [mode, proxy_process] : mesh.proxies) {
    auto proxy = v1::Worker::NewStub(
        grpc::CreateChannel(proxy_process.address, grpc::InsecureChannelCredentials()));
    auto call = [&] { infer(proxy.get()); };
    const Percentiles p = Of(Sequential(config.requests, call));
    const Saturated sat = SaturationWithCpu(config.inflight, config.seconds, call,
                                            {proxy_process.process->pid()});
    const double rps = sat.rps, cpu_us = sat.cpu_us[0];
    r->j["bare_proxy"][mode] = {{"p50_us", p.p50}, {"p99_us", p.p99}, {"rps", rps},
                                {"cpu_us", cpu_us}, {"p50_ratio", p.p50 / raw.latency.p50},
                                {"rps_ratio", rps / raw.rps}};
    Line(r, absl::StrFormat("bare proxy, %-8s (forwards only)    p50 %7.0f  p99 %7.0f  %7.0f "
                            "req/s  (%.2fx raw p50, %.2fx raw req/s; CPU %.0f per request)",
                            mode, p.p50, p.p99, rps, p.p50 / raw.latency.p50, rps / raw.rps,
                            cpu_us));
  }
}

// Where a passthrough request's time goes inside the coordinator: p50 of each stage.
void ReportInside(const std::vector<v1::Timings>& timings, Results* r) {
  auto p50_of = [&](int64_t (v1::Timings::*field)() const) {
    std::vector<double> v;
    for (const auto& t : timings) v.push_back(static_cast<double>((t.*field)()));
    return Of(v).p50;
  };
  const double queued = p50_of(&v1::Timings::queued_us), analyze = p50_of(&v1::Timings::analyze_us),
               reserve = p50_of(&v1::Timings::reserve_us), execute = p50_of(&v1::Timings::execute_us),
               device = p50_of(&v1::Timings::device_wait_us), settle = p50_of(&v1::Timings::settle_us),
               total = p50_of(&v1::Timings::total_us);
  Line(r, absl::StrFormat("  inside the coordinator, p50 of each: total %.0f = queued %.0f, "
                          "analyze %.0f, reserve %.0f, call %.0f (device wait %.0f), settle %.0f",
                          total, queued, analyze, reserve, execute, device, settle));
  r->j["passthrough"]["inside_p50_us"] = {{"total", total},     {"queued", queued},
                                          {"analyze", analyze}, {"reserve", reserve},
                                          {"execute", execute}, {"device_wait", device},
                                          {"settle", settle}};
}

}  // namespace

Percentiles MeasureHops(const BenchConfig& config, const Mesh& mesh, Results* r, double fsync_us) {
  const InferCall infer;
  const RawHop raw = MeasureRawHop(config, mesh, infer, r);
  MeasureBareProxies(config, mesh, infer, raw, r);

  auto coordinator = v1::Orchestrator::NewStub(
      grpc::CreateChannel(mesh.coordinator_address(), grpc::InsecureChannelCredentials()));
  v1::CompleteRequest request;
  *request.add_messages() = User(kPassthroughPrompt);
  request.set_model(kPinnedModel);
  request.set_max_tokens(kAnswerTokens);
  std::vector<double> self_us;
  std::vector<v1::Timings> timings;
  std::mutex self_mu;
  auto passthrough_call = [&] {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    v1::CompleteResponse response;
    grpc::Status status = coordinator->Complete(&context, request, &response);
    if (!status.ok()) Die("passthrough Complete failed: " + status.error_message());
    std::lock_guard<std::mutex> lock(self_mu);
    self_us.push_back(static_cast<double>(response.coordinator_overhead_us()));
    timings.push_back(response.timings());
  };

  const int n = config.requests;
  const Percentiles pass = Of(Sequential(n, passthrough_call));
  self_us.erase(self_us.begin(), self_us.end() - n);  // the warm-up calls recorded theirs too
  timings.erase(timings.begin(), timings.end() - n);
  const Percentiles self = Of(self_us);
  const std::vector<v1::Timings> sequential_timings = timings;  // the saturation run adds more
  const Saturated pass_sat = SaturationWithCpu(config.inflight, config.seconds, passthrough_call,
                                               {mesh.coordinator_pid(), mesh.worker_pid});
  const double pass_rps = pass_sat.rps;
  const Percentiles& rawp = raw.latency;

  r->j["passthrough"] = {{"p50_us", pass.p50},
                         {"p99_us", pass.p99},
                         {"rps", pass_rps},
                         {"self_p50_us", self.p50},
                         {"self_p99_us", self.p99},
                         {"p50_ratio", pass.p50 / rawp.p50},
                         {"p99_ratio", pass.p99 / rawp.p99},
                         {"rps_ratio", pass_rps / raw.rps},
                         {"worker_cpu_us", pass_sat.cpu_us[1]},
                         {"coordinator_cpu_us", pass_sat.cpu_us[0]}};
  Line(r, absl::StrFormat("passthrough (client -> coordinator)   p50 %7.0f  p99 %7.0f  %7.0f req/s",
                          pass.p50, pass.p99, pass_rps));
  Line(r, absl::StrFormat("  ratio to the raw hop                p50 %6.2fx  p99 %6.2fx  %6.2fx",
                          pass.p50 / rawp.p50, pass.p99 / rawp.p99, pass_rps / raw.rps));
  Line(r, absl::StrFormat("  coordinator's own time              p50 %7.0f  p99 %7.0f", self.p50,
                          self.p99));
  ReportInside(sequential_timings, r);
  Line(r, absl::StrFormat("  CPU per request at saturation: worker %.0f (raw hop: %.0f), "
                          "coordinator %.0f",
                          pass_sat.cpu_us[1], raw.worker_cpu_us, pass_sat.cpu_us[0]));
  const double limit = 2.3 * rawp.p50 + fsync_us;
  Line(r, absl::StrFormat("  target p50 <= 2.3 x raw + 1 fsync = %.0f: %s", limit,
                          Verdict(pass.p50 <= limit)));
  Line(r, absl::StrFormat("  target own time p50 <= 50: %s", Verdict(self.p50 <= 50)));
  Line(r, absl::StrFormat("  target saturation >= 0.4 x raw at %d in flight: %s (%.2fx)",
                          config.inflight, Verdict(pass_rps >= 0.4 * raw.rps),
                          pass_rps / raw.rps));
  return pass;
}

}  // namespace loom::bench
