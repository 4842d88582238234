// File: coordinator/pipeline/model_router.h
// Model-backed analysis, off by default: for a request the category classifier is unsure of
// (best probability under `consult_below`), asks a real model on the mesh what the request is,
// as JSON:
//   {"category": "code", "multi_part": false}
// under a tight deadline (`timeout`, and never past the request's). The reply may come wrapped
// in prose or a code fence; the first JSON object in it is read, strictly: a known category, and
// multi_part a boolean (absent: false). A reply that is malformed, late or names no known
// category is not used (and not credited): the classifier's verdict stands and the plan's
// reasons say why. Verdicts are cached by the prompt's hash, so a repeated prompt asks nobody
// (the cache is bounded and cleared whole when full).
//
// Which model: the configured one, else the smallest healthy real (non-simulated) model, as
// the decomposer chooses (a simulated device cannot answer JSON). The call is a contribution
// (CONTRIBUTION_ROLE_ROUTE) paid from the request's reservation, which RequestRunner sizes for it
// before the call. A multi-part verdict turns a passthrough into a compiled request only when
// the caller says the reservation covers one (`may_compile`).
//
// Thread-safe: Consult may be called from many request threads at once.
#ifndef LOOM_COORDINATOR_PIPELINE_MODEL_ROUTER_H_
#define LOOM_COORDINATOR_PIPELINE_MODEL_ROUTER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/analyzer/request_analyzer.h"
#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/pipeline/request_scope.h"

namespace loom {

struct RouterOptions {
  bool enabled = false;                               // --analyzer_router
  std::string model;                                  // empty: the smallest real model
  double consult_below = 0.5;                         // classifier's best probability under this
  absl::Duration timeout = absl::Milliseconds(2500);  // for the model call
  int64_t max_tokens = 48;                            // the reply is a short JSON object
  size_t cache_entries = 10000;                       // verdicts kept
};

struct RouterVerdict {
  v1::TaskCategory category = v1::TASK_CATEGORY_GENERAL;
  bool multi_part = false;
};

struct RouterResult {
  std::optional<RouterVerdict> verdict;  // none: the classifier's verdict stands
  std::string note;                      // for the plan's reasons
  std::optional<CallResult> call;        // the accepted call, to credit (none when cached)
};

class ModelRouter {
 public:
  // `runner` may be null when disabled. Not owned.
  ModelRouter(RouterOptions options, const AttemptRunner* runner);

  const RouterOptions& options() const { return options_; }

  // Whether `analysis` of `request` should be checked with a model: enabled, no mode forced and
  // nothing pinned, one ask that is not a follow-up nor under a system message's task, and the
  // classifier unsure of it.
  bool ShouldConsult(const Analysis& analysis, const v1::CompleteRequest& request) const;

  RouterResult Consult(const RequestScope& scope, const std::string& text) const;

  // The verdict into the analysis: the category first (the ask's and the plan's), and, when
  // `may_compile`, a multi-part passthrough becomes compiled.
  static void Apply(const RouterVerdict& verdict, bool may_compile, Analysis* analysis);

  static std::string Prompt(const std::string& text);
  static absl::StatusOr<RouterVerdict> ParseReply(absl::string_view reply);

 private:
  const RouterOptions options_;
  const AttemptRunner* const runner_;
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<uint64_t, RouterVerdict> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_MODEL_ROUTER_H_
