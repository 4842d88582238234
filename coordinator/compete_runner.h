// File: coordinator/compete_runner.h
// Compete: the same request goes to the top-k distinct models (by affinity for its category and
// load; k bounded by the models there are), in parallel; then one answer is chosen — by a
// judge model when one is configured and answers usably, otherwise by agreement: the
// candidate whose words overlap most with the others' (mean Jaccard similarity), ties to the
// better-ranked candidate. The method and reason are recorded. Candidates that fail are left
// out; when all fail, the request fails.
//
// Thread-safe (const after construction).
#ifndef LOOM_COORDINATOR_COMPETE_RUNNER_H_
#define LOOM_COORDINATOR_COMPETE_RUNNER_H_

#include <optional>
#include <string>
#include <vector>

#include "common/thread_cache.h"
#include "coordinator/attempt_runner.h"

namespace loom {

struct CompeteOptions {
  int k = 3;                // candidates (distinct models)
  std::string judge_model;  // empty: choose by agreement
};

struct CompeteOutcome {
  std::vector<std::string> sub_task_ids;  // "compete-1", ...
  std::vector<CallResult> candidates;     // the ones that answered, best-ranked first
  std::vector<double> agreement;          // mean similarity to the others
  int winner = 0;
  std::string method;                     // "judge" or "agreement"
  std::string reason;
  std::optional<CallResult> judge;        // the judge's call, when its choice was used
};

class CompeteRunner {
 public:
  CompeteRunner(CompeteOptions options, const AttemptRunner* runner)
      : options_(std::move(options)), runner_(runner) {}

  absl::StatusOr<CompeteOutcome> Run(const std::string& request_id,
                                     const std::vector<v1::ChatMessage>& messages,
                                     v1::TaskCategory category, int64_t max_tokens,
                                     int64_t credit_cap,
                                     absl::Time deadline, Cancellation* cancel,
                                     const EventSink& sink, AttemptLog* log,
      const v1::Sampling& sampling = v1::Sampling::default_instance()) const;

  // Jaccard similarity of the lowercase word sets of `a` and `b`, in [0, 1].
  static double Similarity(const std::string& a, const std::string& b);
  // The 1-based choice in a judge's reply ("2", "Answer 2 is best"), if it names 1..n.
  static std::optional<int> ParseJudgeChoice(const std::string& reply, int n);

 private:
  const CompeteOptions options_;
  const AttemptRunner* const runner_;
  mutable ThreadCache threads_;  // candidates block on devices; threads are reused
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_COMPETE_RUNNER_H_
