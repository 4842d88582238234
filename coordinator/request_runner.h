// File: coordinator/request_runner.h
// Runs one client request end to end: validate, plan, choose a device, run attempts (retrying
// on another device when an attempt fails with a retryable status), record who contributed,
// settle through the ledger, and answer. Passthrough plans only for now; the compilation
// pipeline (analyzer, decomposer, fan-out, synthesis) plugs in here.
//
//   RequestRunner runner(options, &registry, &device_client, &ledger, Clock::Real());
//   absl::StatusOr<v1::CompleteResponse> response =
//       runner.Run(request, absl::Now() + absl::Seconds(30), sink, &cancel);
//
// Thread-safe: Run may be called from many threads at once. It blocks the calling thread until
// the request is done, so gRPC adapters call it from a pool, never from a reactor.
// Failure: INVALID_ARGUMENT for bad requests (nothing runs), NOT_FOUND for an unknown model,
// UNAVAILABLE when no device could serve (the message names every failed attempt),
// DEADLINE_EXCEEDED / CANCELLED from the client. Nothing is charged unless the request
// succeeds; only the successful attempt is credited.
#ifndef LOOM_COORDINATOR_REQUEST_RUNNER_H_
#define LOOM_COORDINATOR_REQUEST_RUNNER_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "common/clock.h"
#include "coordinator/device_client.h"
#include "coordinator/model_selector.h"
#include "coordinator/registry.h"
#include "ledger/ledger_store.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

struct RunnerOptions {
  int max_attempts = 3;                                // per sub-task, each on another device
  absl::Duration attempt_timeout = absl::Seconds(60);  // deadline of one attempt
  absl::Duration request_timeout = absl::Seconds(300); // when the client sets no deadline
  int64_t default_max_tokens = 512;                    // when the request sets none
  int64_t max_output_tokens = 16'384;                  // larger max_tokens is refused
  int max_messages = 256;
  size_t max_message_bytes = 256 * 1024;
  size_t max_request_bytes = 1 << 20;                  // all message contents together
  std::string default_client = "anonymous";            // charged when the request names none
};

// Receives progress events (plan, sub-task started/retried/finished, output text, final).
// Called on the thread running the request; must not block for long.
using EventSink = std::function<void(const v1::CompleteEvent&)>;

class RequestRunner {
 public:
  RequestRunner(RunnerOptions options, DeviceRegistry* registry, DeviceClient* devices,
                LedgerStore* ledger, Clock* clock);

  absl::StatusOr<v1::CompleteResponse> Run(const v1::CompleteRequest& request,
                                           absl::Time deadline, const EventSink& sink,
                                           Cancellation* cancel);

  // The plan Run would follow, without running anything.
  absl::StatusOr<v1::CompilationPlan> Explain(const v1::CompleteRequest& request);

 private:
  absl::Status Validate(const v1::CompleteRequest& request) const;
  absl::StatusOr<v1::CompilationPlan> Plan(const v1::CompleteRequest& request,
                                           const std::string& request_id);

  // Constant after construction.
  const RunnerOptions options_;
  DeviceRegistry* const registry_;
  DeviceClient* const devices_;
  LedgerStore* const ledger_;
  Clock* const clock_;
  const ModelSelector selector_{};
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_REQUEST_RUNNER_H_
