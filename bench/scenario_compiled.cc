// File: bench/scenario_compiled.cc
// Scenario 3: compiled requests of four sub-tasks plus synthesis, and the fan-out stage of
// four beside one.
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

namespace loom::bench {
void MeasureCompiled(const BenchConfig& config, const Mesh& mesh, Results* r, double fsync_us) {
  const int n = config.compiled_requests;
  auto coordinator = v1::Orchestrator::NewStub(
      grpc::CreateChannel(mesh.coordinator_address(), grpc::InsecureChannelCredentials()));
  auto run = [&](const char* prompt, int expect_sub_tasks, std::vector<double>* self,
                 std::vector<double>* execute) {
    v1::CompleteRequest request;
    *request.add_messages() = User(prompt);
    request.set_mode(v1::PLAN_KIND_COMPILED);
    request.set_max_tokens(kAnswerTokens);
    return [=, &coordinator] {
      grpc::ClientContext context;
      context.set_deadline(In(10));
      v1::CompleteResponse response;
      grpc::Status status = coordinator->Complete(&context, request, &response);
      if (!status.ok()) Die("compiled Complete failed: " + status.error_message());
      if (response.plan().sub_tasks_size() != expect_sub_tasks) {
        Die(absl::StrCat("expected ", expect_sub_tasks, " sub-tasks, the plan has ",
                         response.plan().sub_tasks_size()));
      }
      self->push_back(static_cast<double>(response.coordinator_overhead_us()));
      execute->push_back(static_cast<double>(response.timings().execute_us()));
    };
  };
  std::vector<double> self4, execute4, self1, execute1;
  const Percentiles total4 = Of(Sequential(n, run(kFourParts, 4, &self4, &execute4)));
  const Percentiles total1 = Of(Sequential(n, run(kOnePart, 1, &self1, &execute1)));
  // The warm-up calls also recorded: keep the measured ones.
  self4.erase(self4.begin(), self4.end() - n);
  execute4.erase(execute4.begin(), execute4.end() - n);
  execute1.erase(execute1.begin(), execute1.end() - n);
  const Percentiles own = Of(self4), fan4 = Of(execute4), fan1 = Of(execute1);
  const double raw_p50 = r->j["raw_hop"]["p50_us"].get<double>();
  r->j["compiled"] = {{"p50_us", total4.p50},
                      {"p99_us", total4.p99},
                      {"overhead_p50_us", own.p50},
                      {"overhead_p99_us", own.p99},
                      {"fanout4_p50_us", fan4.p50},
                      {"single_p50_us", fan1.p50},
                      {"single_total_p50_us", total1.p50},
                      {"sub_tasks", 4}};
  Line(r, absl::StrFormat("compiled, 4 sub-tasks + synthesis      p50 %7.0f  p99 %7.0f", total4.p50,
                          total4.p99));
  Line(r, absl::StrFormat("  coordinator's own time              p50 %7.0f  p99 %7.0f", own.p50,
                          own.p99));
  Line(r, absl::StrFormat("  fan-out stage: 4 sub-tasks p50 %.0f, 1 sub-task p50 %.0f (%.2fx)",
                          fan4.p50, fan1.p50, fan4.p50 / fan1.p50));
  const double limit = 3.5 * raw_p50 + fsync_us;
  Line(r, absl::StrFormat("  target p50 <= 3.5 x raw + 1 fsync = %.0f: %s", limit,
                          Verdict(total4.p50 <= limit)));
  Line(r, absl::StrFormat("  target fan-out of 4 <= 1.5 x one: %s", Verdict(fan4.p50 <= 1.5 * fan1.p50)));
}

}  // namespace loom::bench
