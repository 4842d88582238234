// File: coordinator/pipeline/task_decomposer.h
// Splits a compiled request into a graph of sub-tasks plus a synthesis prompt.
//
// Model path: asks a small model on the mesh (the configured one, else the smallest advertised;
// in `auto` mode only real, non-simulated models are asked, since a simulated device cannot
// write JSON) for JSON of the form
//   {"sub_tasks": [{"id": "A", "prompt": "...", "category": "code", "order_index": 0,
//                   "depends_on": [], "estimated_tokens": 300}, ...],
//    "synthesis_prompt": "..."}
// under a deadline, then validates it strictly (ParseModelOutput): bounded size, unique ids,
// known categories, dependencies that exist and have a lower order_index (so no cycles),
// bounded count, depth and prompt sizes. Model ids are replaced by UUIDs.
// Rule-based path (FromRules), used when no model is available, the call fails or its output
// is rejected (the reason is recorded in Decomposition::note): one sub-task per ask of the
// analysis, dependencies where an ask refers to an earlier result ("it", "the two ...") or
// follows "then", and a synthesis prompt.
//
// Thread-safe (const after construction).
#ifndef LOOM_COORDINATOR_PIPELINE_TASK_DECOMPOSER_H_
#define LOOM_COORDINATOR_PIPELINE_TASK_DECOMPOSER_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/pipeline/request_scope.h"
#include "coordinator/analyzer/request_analyzer.h"

namespace loom {

struct DecomposerOptions {
  enum class Mode { kAuto, kModel, kRules };
  Mode mode = Mode::kAuto;
  std::string model;                          // the model to ask; empty: smallest advertised
  absl::Duration timeout = absl::Seconds(20);  // for the model call
  int max_sub_tasks = 8;
  int max_depth = 4;                          // longest dependency chain
  size_t max_prompt_bytes = 16 * 1024;        // per sub-task prompt and synthesis prompt
  size_t max_json_bytes = 64 * 1024;          // model output accepted
  int64_t sub_task_tokens = 512;              // default estimate / max output per sub-task
};

struct Decomposition {
  std::vector<v1::SubTask> sub_tasks;
  std::string synthesis_prompt;
  std::string method;  // "rules" or "model:<name>"
  std::string note;    // why the rules were used, when a model was tried or unavailable
  std::optional<CallResult> model_call;  // the accepted model call (credited as DECOMPOSE)
};

class TaskDecomposer {
 public:
  TaskDecomposer(DecomposerOptions options, const AttemptRunner* runner);

  Decomposition Decompose(const RequestScope& scope, const Analysis& analysis,
                          const std::string& request_text) const;

  static Decomposition FromRules(const Analysis& analysis, int64_t sub_task_tokens);
  // Marks each sub-task that carries the client's own material (SubTask.private_data): the
  // model said so, its prompt quotes the request's pasted material or shows personal data
  // (policy.h), or a dependency it receives is private. Never unmarks one.
  static void MarkPrivateData(const Analysis& analysis, Decomposition* d);
  static absl::StatusOr<Decomposition> ParseModelOutput(absl::string_view output,
                                                        const DecomposerOptions& options);
  // The instruction sent to the decomposer model.
  static std::string ModelPrompt(const std::string& request_text, int max_sub_tasks);

  const DecomposerOptions& options() const { return options_; }

 private:
  // The model to ask, or a reason why none is.
  absl::StatusOr<std::string> ChooseModel() const;

  const DecomposerOptions options_;
  const AttemptRunner* const runner_;
};

// A short label for a sub-task: its category and the start of its prompt.
std::string SubTaskLabel(const v1::SubTask& task);

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_TASK_DECOMPOSER_H_
