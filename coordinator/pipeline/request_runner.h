// File: coordinator/pipeline/request_runner.h
// Runs one client request end to end (DESIGN.md, "The request path"): validate; analyze
// (RequestAnalyzer); then
//   PASSTHROUGH  one model call, on the pinned model/family or the best device for the
//                request's category;
//   COMPILED     decompose (TaskDecomposer), run the sub-task graph (FanOutExecutor), weave
//                the parts together (ResponseSynthesizer);
//   COMPETE      several models answer, one answer is chosen (CompeteRunner);
// then one ContributionRecord per model call whose output was used, weights summing to 1,
// settled through the ledger before the answer returns.
//
//   RequestRunner runner(options, &registry, &selector, &device_client, &ledger, Clock::Real());
//   absl::StatusOr<v1::CompleteResponse> response =
//       runner.Run(request, absl::Now() + absl::Seconds(30), sink, &cancel);
//
// Thread-safe: Run may be called from many threads at once. It blocks the calling thread until
// the request is done, so gRPC adapters call it from a pool, never from a reactor.
// Failure: INVALID_ARGUMENT for bad requests (nothing runs), NOT_FOUND for an unknown model,
// UNAVAILABLE when no device could serve a part (naming it and every failed attempt),
// DEADLINE_EXCEEDED / CANCELLED from the client. A request that fails is never charged;
// failed attempts are never credited.
// Abandoned requests (the rule on both doors, streamed or not): when the client goes away —
// `cancel` fires because it closed its connection or cancelled its call — every attempt in
// flight stops at once, and the request is settled for the output tokens the coordinator had
// received from devices until then: whole calls that finished and the part of each call that
// was cut off, counted as for any call (never more than the device claimed or the request's
// token bound). The client pays for those tokens and each provider earns exactly its own;
// with none, nothing is charged. The call still returns CANCELLED (its message names the
// settlement), since no answer is delivered.
// Request ids: a client may name its request (CompleteRequest.request_id, X-Request-Id,
// Idempotency-Key); the id is scoped to its account ("client:NAME/ID" in the ledger), so no
// client sees or blocks another's. One request per id runs at a time: a duplicate sent while
// the first runs waits for it (here; on another coordinator the ledger refuses it with
// ABORTED); once the first is settled, the same id gets its answer again (replayed=true,
// from the ledger, for its answer retention) and is never run or charged again. A request that
// failed was not charged, so its id may be sent again and runs. One abandoned by its client
// (below) was charged for its part but has no answer: its id is spent (ALREADY_EXISTS).
// Budgets: before any device works, an upper bound of the cost is reserved on the client's
// account (refused with FAILED_PRECONDITION "insufficient credits" when too low); settlement
// charges the actual cost and consumes the reservation; any failure releases it. A reservation
// left by a crash expires after the request timeout plus reservation_margin. If settlement
// itself fails, the request fails: the answer is withheld, nothing is charged, no provider is
// credited, and the error says so (the work done is lost, never billed).
#ifndef LOOM_COORDINATOR_PIPELINE_REQUEST_RUNNER_H_
#define LOOM_COORDINATOR_PIPELINE_REQUEST_RUNNER_H_

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/cancellation.h"
#include "common/clock.h"
#include "common/thread_cache.h"
#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/pipeline/compete_runner.h"
#include "coordinator/mesh/device_client.h"
#include "coordinator/pipeline/fan_out_executor.h"
#include "coordinator/pipeline/metrics.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/analyzer/request_analyzer.h"
#include "coordinator/pipeline/response_synthesizer.h"
#include "coordinator/pipeline/model_router.h"
#include "coordinator/mesh/outcome_model.h"
#include "coordinator/mesh/policy.h"
#include "coordinator/pipeline/request_log.h"
#include "coordinator/pipeline/request_scope.h"
#include "coordinator/pipeline/task_decomposer.h"
#include "ledger/ledger_store.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

// The request's ask (its last user message, else its last message).
std::string LastUserMessage(const v1::CompleteRequest& request);
// What every part of a compiled plan needs besides its own prompt: the messages before the ask
// (system messages and the conversation's earlier turns, in order) and any system message after
// it. A follow-up ("now explain its complexity") means nothing without the turns before it.
std::vector<v1::ChatMessage> ContextMessages(const v1::CompleteRequest& request);

struct RunnerOptions {
  AttemptOptions attempts;
  AnalyzerOptions analyzer;
  DecomposerOptions decomposer;
  CompeteOptions compete;
  RouterOptions router;  // model-backed analysis of unclear requests (off by default)
  PolicyBook policies;   // the named policies requests may choose (policy.h)
  // Fed with compete verdicts (the selector reads it); null: nothing learnt. Not owned.
  OutcomeModel* outcomes = nullptr;
  // The recent requests the console shows: each is entered once its id is claimed and ends
  // with its result; a streamed one's plan and sub-task events go in as they happen (a unary
  // one's with its result: without a sink the stages build no events). Null: none. Not owned.
  RequestLog* recent = nullptr;
  absl::Duration request_timeout = absl::Seconds(300); // when the client sets no deadline
  // When a request sets no max_tokens, devices apply their own limit and the reservation
  // assumes the largest max_output_tokens a model on the mesh advertises (this value for a
  // model that advertises none).
  int64_t unadvertised_max_output_tokens = 4096;
  int64_t max_output_tokens = 16'384;                  // larger max_tokens is refused
  int max_messages = 256;
  size_t max_message_bytes = 256 * 1024;
  size_t max_request_bytes = 1 << 20;                  // all message contents together
  std::string default_client = "anonymous";            // charged when the request names none
  absl::Duration reservation_margin = absl::Minutes(1); // reservations outlive the request by this
};

class RequestRunner {
 public:
  // `metrics` may be null.
  RequestRunner(RunnerOptions options, DeviceRegistry* registry, const ModelSelector* selector,
                DeviceClient* devices, LedgerStore* ledger, Clock* clock,
                Metrics* metrics = nullptr);

  // `arrived`: when the request reached the coordinator (default: now), so the time it waited
  // for a request thread counts in the reported overhead.
  absl::StatusOr<v1::CompleteResponse> Run(const v1::CompleteRequest& request,
                                           absl::Time deadline, const EventSink& sink,
                                           Cancellation* cancel,
                                           absl::Time arrived = absl::InfinitePast());

  Clock* clock() const { return clock_; }
  const PolicyBook& policies() const { return options_.policies; }

  // Calls waiting now for another call with the same request id to finish.
  int DuplicatesWaiting() const;

  // The plan Run would follow, without running anything: analysis, the rule-based
  // decomposition (a decomposer model may split differently when run), and the device each
  // sub-task would get now.
  absl::StatusOr<v1::CompilationPlan> Explain(const v1::CompleteRequest& request);

  // A client's verdict on its request, and the affinities the selector uses (feedback.h).
  absl::StatusOr<v1::FeedbackResponse> Feedback(const std::string& client_id,
                                                const v1::FeedbackRequest& request);
  v1::ListAffinitiesResponse Affinities() const;

 private:
  // Run without the request log; `logged` gets the ledger id once it is claimed (and the log
  // entry begun).
  absl::StatusOr<v1::CompleteResponse> RunUnlogged(const v1::CompleteRequest& request,
                                                   absl::Time deadline, const EventSink& sink,
                                                   Cancellation* cancel, absl::Time arrived,
                                                   std::string* logged);
  absl::Status Validate(const v1::CompleteRequest& request) const;
  v1::CompilationPlan BasePlan(const Analysis& analysis, const std::string& request_id) const;
  void AddTentativeAssignments(v1::CompilationPlan* plan, const v1::CompleteRequest& request,
                               const RequestPolicy& policy) const;
  // An upper bound of what the request can cost: the most output tokens its plan can credit,
  // at the highest price on the mesh.
  // Includes the ledger's fee. INVALID_ARGUMENT if it would overflow.
  // At `price` micro-credits per 1k (default: the highest on the mesh).
  // `policy` (may be null): only prices its limit allows count as the mesh's highest.
  absl::StatusOr<int64_t> CostBound(const Analysis& analysis, int64_t max_tokens,
                                    int64_t price = -1,
                                    const SelectionPolicy* policy = nullptr) const;
  // A policy's max_cost: when the bound at the mesh's prices is above it, the highest price
  // whose bound fits becomes the policy's price limit; FAILED_PRECONDITION (PolicyUnmetError)
  // when not even the cheapest fits. `choices` answers each cost the bound.
  absl::Status FitMaxCost(const Analysis& analysis, int64_t max_tokens, int choices,
                          RequestPolicy* policy, int64_t* bound) const;
  // A request whose model is a named policy ("loom-fast") chooses that policy, not a model.
  v1::CompleteRequest WithNamedPolicy(const v1::CompleteRequest& request) const;
  // A client who cannot afford the bound at the mesh's highest price is served by the devices
  // it can afford: the highest price whose bound fits its available credits, the bound at it,
  // and the devices priced above it (to exclude). Nothing changes when the client can afford
  // every device, the ledger cannot tell, or even the cheapest is too dear (then 402).
  struct Affordable {
    int64_t bound = 0;
    std::set<std::string> too_dear;
  };
  Affordable AffordableFor(const std::string& client_account, const Analysis& analysis,
                           int64_t max_tokens, int64_t bound) const;
  // What to reserve before anything runs: the cost bound of the plan (a router call and a
  // compiled plan included when the client can afford them; `may_consult` says the request
  // is unclear enough to ask), the devices left out for a client who cannot afford them,
  // a policy's max_cost (which may lower its price limit), times the choices.
  struct Budget {
    int64_t bound = 0;
    bool consult = false;      // ask the router model
    bool may_compile = false;  // the router may turn the request into a compiled plan
    std::set<std::string> too_dear;
  };
  absl::StatusOr<Budget> PlanBudget(const v1::CompleteRequest& request,
                                    const std::string& request_id,
                                    const std::string& client_account, int64_t max_tokens,
                                    int choices, bool may_consult, RequestPolicy* policy,
                                    Analysis* analysis) const;
  // INVALID_ARGUMENT when tools, a response format or images (`needs`: capability, field)
  // cannot be served: a forced compiled or compete mode, or no model advertising them.
  absl::Status CheckCapabilities(
      const v1::CompleteRequest& request,
      const std::vector<std::pair<std::string, std::string>>& needs) const;
  // The most tokens one answer may have: the request's max_tokens, else the largest limit a
  // model on the mesh advertises.
  int64_t AnswerTokenBound(const v1::CompleteRequest& request) const;
  absl::StatusOr<v1::CompleteResponse> Execute(const v1::CompleteRequest& request,
                                               const Analysis& analysis,
                                               const std::string& request_id,
                                               const std::string& client_account,
                                               absl::Time deadline, const EventSink& sink,
                                               Cancellation* cancel, absl::Time arrived,
                                               v1::Timings timings, AttemptLog* log,
                                               const std::optional<CallResult>& route_call);
  // One request's run of its plan: its scope, and what the plan kind fills in for settlement
  // and the response (plan_kinds.cc runs each kind; SettleAndRespond finishes every one).
  struct PlanRun {
    RequestScope scope;
    const v1::CompleteRequest& request;
    const Analysis& analysis;
    std::string text;                       // the last user message
    std::vector<v1::ChatMessage> context;   // ContextMessages: given to every part
    int64_t max_tokens = 0;                 // AnswerTokenBound
    absl::Time arrived;
    v1::Timings timings;
    absl::Time stage_start;
    v1::CompilationPlan plan;
    v1::CompleteResponse response;
    std::vector<v1::ContributionRecord> records;
    // Ends a stage: its wall time since the last one goes into `timings` through `set`.
    void StageDone(void (v1::Timings::*set)(int64_t));
  };
  absl::Status RunCompiled(PlanRun& run) const;
  absl::Status RunCompete(PlanRun& run) const;
  absl::Status RunPassthrough(PlanRun& run) const;
  // The plan with its tentative assignments, to the request log and the stream.
  void EmitPlan(PlanRun& run) const;
  // Weights, settlement (or the error that withholds the answer), the receipt, the final event.
  absl::StatusOr<v1::CompleteResponse> SettleAndRespond(PlanRun& run,
                                                        const std::string& client_account) const;
  // Claims `request_id` on this coordinator, waiting (until `deadline` or `cancel`) while
  // another call holds it. UnclaimId releases it and wakes the waiters.
  absl::Status ClaimId(const std::string& request_id, absl::Time deadline, Cancellation* cancel);
  void UnclaimId(const std::string& request_id);
  // The answer of a request settled before (`settled` is the ledger's ALREADY_EXISTS), from
  // the ledger; ALREADY_EXISTS when it is no longer kept.
  absl::StatusOr<v1::CompleteResponse> Replay(const v1::CompleteRequest& request,
                                              const std::string& request_id,
                                              const absl::Status& settled, const EventSink& sink);
  // Settles an abandoned request for the work delivered until it was cancelled (the rule
  // above); returns the CANCELLED status to report.
  absl::Status SettleAbandoned(const std::string& request_id, const std::string& client_account,
                               const AttemptLog& log);
  // Drops this call's reservation; a failure is logged (the ledger retries it with its next
  // write, and a reservation expires by itself in the end).
  void ReleaseReservation(const std::string& request_id);

  // Constant after construction.
  const RunnerOptions options_;
  DeviceRegistry* const registry_;
  LedgerStore* const ledger_;
  Clock* const clock_;
  Metrics* const metrics_;
  const RequestAnalyzer analyzer_;
  const AttemptRunner attempts_;
  const TaskDecomposer decomposer_;
  const FanOutExecutor executor_;
  const ResponseSynthesizer synthesizer_;
  const CompeteRunner compete_;
  const ModelRouter router_;
  mutable ThreadCache choice_threads_;  // the choices of an n > 1 request block on devices

  mutable absl::Mutex flights_mu_;
  // Request ids running now, each with the signal its duplicates wait for.
  std::map<std::string, std::shared_ptr<Cancellation>> flights_ ABSL_GUARDED_BY(flights_mu_);
  int duplicates_waiting_ ABSL_GUARDED_BY(flights_mu_) = 0;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_REQUEST_RUNNER_H_
