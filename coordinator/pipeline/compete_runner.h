// File: coordinator/pipeline/compete_runner.h
// Compete: the same request goes to the top-k distinct models (by affinity for its category and
// load; k bounded by the models there are), in parallel; then one answer is chosen — by a
// judge model when one is configured and returns a valid verdict (JSON: winner, a score per
// candidate, reason; ParseJudgeVerdict; a judge advertising json_schema is held to the
// verdict's schema), otherwise by agreement: the
// candidate whose words overlap most with the others' (mean Jaccard similarity), ties to the
// better-ranked candidate. The method and reason are recorded. Candidates that fail are left
// out; when all fail, the request fails.
//
// Thread-safe (const after construction).
#ifndef LOOM_COORDINATOR_PIPELINE_COMPETE_RUNNER_H_
#define LOOM_COORDINATOR_PIPELINE_COMPETE_RUNNER_H_

#include <optional>
#include <string>
#include <vector>

#include "common/thread_cache.h"
#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/pipeline/request_scope.h"

namespace loom {

// Payout (the rule, stated in the README and shown on every compete receipt): the winner is
// paid its tokens at its full price; every other candidate that answered is paid
// participant_share of its tokens' price (rounded down), for the work it did. The client pays
// the sum, never more than the reservation, which bounds every candidate at full price.
struct CompeteOptions {
  int k = 3;                // candidates (distinct models)
  std::string judge_model;  // empty: choose by agreement
  double participant_share = 1.0;  // 0-1: what a candidate that did not win is paid
};

struct JudgeVerdict {
  int winner = 0;              // 1-based
  std::vector<double> scores;  // 0-10 per candidate, in order (empty: not given)
  std::string reason;
};

struct CompeteOutcome {
  std::vector<std::string> sub_task_ids;  // "compete-1", ...
  std::vector<CallResult> candidates;     // the ones that answered, best-ranked first
  std::vector<double> agreement;          // mean similarity to the others
  int winner = 0;
  std::string method;                     // "judge" or "agreement"
  std::vector<double> scores;             // the judge's, when its verdict was used
  std::string reason;
  std::optional<CallResult> judge;        // the judge's call, when its choice was used
};

class CompeteRunner {
 public:
  CompeteRunner(CompeteOptions options, const AttemptRunner* runner)
      : options_(std::move(options)), runner_(runner) {}

  absl::StatusOr<CompeteOutcome> Run(const RequestScope& scope,
                                     const std::vector<v1::ChatMessage>& messages,
                                     v1::TaskCategory category, int64_t max_tokens,
                                     int64_t credit_cap,
      const v1::Sampling& sampling = v1::Sampling::default_instance()) const;

  // Jaccard similarity of the lowercase word sets of `a` and `b`, in [0, 1].
  static double Similarity(const std::string& a, const std::string& b);
  // A judge's reply: one JSON object (a fence or words around it are ignored) with "winner"
  // (1..n), optionally "scores" (n numbers 0-10; the winner's must be the best) and "reason".
  // INVALID_ARGUMENT "malformed verdict: ..." saying what is wrong.
  static absl::StatusOr<JudgeVerdict> ParseJudgeVerdict(const std::string& reply, int n);

 private:
  absl::StatusOr<CompeteOutcome> RunCandidates(const RequestScope& scope,
                                               const std::vector<Selection>& picks,
                                               const std::vector<v1::ChatMessage>& messages,
                                               int64_t max_tokens, int64_t credit_cap,
                                               const v1::Sampling& sampling) const;
  std::string Judge(const RequestScope& scope, const std::vector<v1::ChatMessage>& messages,
                    CompeteOutcome* out) const;

  const CompeteOptions options_;
  const AttemptRunner* const runner_;
  mutable ThreadCache threads_;  // candidates block on devices; threads are reused
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_COMPETE_RUNNER_H_
