// File: coordinator/pipeline/fan_out_executor.h
// Runs a sub-task graph: each sub-task starts as soon as all its dependencies are done, so
// independent sub-tasks run at the same time (on different devices when the selector's load
// penalty says so); a dependent's prompt carries its dependencies' outputs. Each sub-task runs
// through the AttemptRunner (deadline per attempt, retries on other devices). When a sub-task
// finally fails, the other in-flight sub-tasks are cancelled and the error names the failed
// sub-task. Cancellation of the request reaches every in-flight attempt.
//
// Thread-safe: each Run uses its own threads (one per running sub-task; the graph is bounded
// by the decomposer's limits).
#ifndef LOOM_COORDINATOR_PIPELINE_FAN_OUT_EXECUTOR_H_
#define LOOM_COORDINATOR_PIPELINE_FAN_OUT_EXECUTOR_H_

#include <string>
#include <vector>

#include "common/thread_cache.h"
#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/pipeline/request_scope.h"

namespace loom {

struct SubTaskOutcome {
  v1::SubTask task;
  std::string input;  // the user message sent, with dependency outputs
  CallResult result;
};

class FanOutExecutor {
 public:
  explicit FanOutExecutor(const AttemptRunner* runner) : runner_(runner) {}

  // Every sub-task is sent `context` (the request's ContextMessages: its system messages and
  // the conversation before its ask) and then its own prompt, with the client's sampling
  // settings except `stop` (a stop sequence is about the answer, not its parts).
  // Outcomes come back in the order of `tasks`.
  absl::StatusOr<std::vector<SubTaskOutcome>> Run(const RequestScope& scope,
                                                  const std::vector<v1::SubTask>& tasks,
                                                  const std::vector<v1::ChatMessage>& context,
      const v1::Sampling& sampling = v1::Sampling::default_instance()) const;

  // The user message for `task`, given its dependencies' outcomes.
  static std::string BuildInput(const v1::SubTask& task,
                                const std::vector<const SubTaskOutcome*>& dependencies);

 private:
  const AttemptRunner* const runner_;
  // Sub-tasks block on devices; each runs on a thread of its own, reused across requests.
  mutable ThreadCache threads_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_FAN_OUT_EXECUTOR_H_
