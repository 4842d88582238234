// File: coordinator/pipeline/attempt_runner.h
// Runs one model call of a request (a passthrough answer, a sub-task, the decomposition, the
// synthesis, a compete candidate, the judge) on the mesh: chooses a device, gives the attempt
// a deadline, streams its text, and on a retryable failure (device gone, stream broken,
// deadline, RESOURCE_EXHAUSTED, worker error) tries again on another device, up to a bounded
// number of attempts. Every attempt is recorded in the AttemptLog with device, model, outcome,
// reason, latency and tokens.
//
// Streams never garble: when an attempt fails after it streamed text, the next attempt
// continues from that text if its model can ("continue" capability: the text goes as the
// start of the assistant's turn, and max_tokens and the credit cap shrink by its tokens), so
// the client sees one answer; otherwise the client is told in the stream that the answer
// restarts, and the next attempt answers anew. The failed attempt is paid for the streamed
// part the answer keeps or the client received (CallResult::earlier).
//
// Attempt deadline: the request's deadline, or sooner: when the device reports its speed,
// 2 s + 3 x max_tokens / tokens_per_second (a device far slower than it claims is given up
// on); always at most attempt_timeout.
//
// Thread-safe: Run may be called from several threads at once (fan-out).
#ifndef LOOM_COORDINATOR_PIPELINE_ATTEMPT_RUNNER_H_
#define LOOM_COORDINATOR_PIPELINE_ATTEMPT_RUNNER_H_

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/cancellation.h"
#include "common/clock.h"
#include "coordinator/mesh/device_client.h"
#include "coordinator/pipeline/metrics.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/policy.h"
#include "coordinator/mesh/registry.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

class OutcomeModel;

// Receives progress events. Callers serialise calls (RequestRunner wraps it in a mutex).
// Empty when nobody listens (a unary request): stages then build no events at all.
using EventSink = std::function<void(const v1::CompleteEvent&)>;

struct AttemptOptions {
  int max_attempts = 3;                                // per call, each on another device
  absl::Duration attempt_timeout = absl::Seconds(60);  // upper bound of one attempt
  absl::Duration first_token_allowance = absl::Seconds(2);
  double slowness_factor = 3;                          // x the time the device's speed implies
  // A worker claiming more output tokens than the coordinator received, by more than this
  // fraction plus overclaim_slack_tokens, is flagged (it is paid only for what was received).
  double overclaim_tolerance = 0.10;
  int64_t overclaim_slack_tokens = 4;
  // Told of deadlines missed by a model's own work (outcome_model.h); null: nothing learnt.
  // Not owned.
  OutcomeModel* outcomes = nullptr;
};

struct CallSpec {
  std::string sub_task_id;
  v1::ContributionRole role = v1::CONTRIBUTION_ROLE_EXECUTE;
  std::vector<v1::ChatMessage> messages;
  // The most output tokens the device may produce; 0 = the device's own limit (the cost bound
  // then assumes the model's advertised maximum). Credited tokens never exceed it.
  int64_t max_tokens = 512;
  int64_t credit_cap = 0;  // with max_tokens 0: the most tokens credited (the cost bound's)
  v1::Sampling sampling;  // passed to the device as it is
  v1::Structure structure;  // tools and response_format, passed to the device as they are
  // Device choice: a pinned model or family (passthrough target), else by affinity for these
  // categories and load.
  PassthroughTarget pinned;
  std::vector<v1::TaskCategory> categories = {v1::TASK_CATEGORY_GENERAL};
  std::set<std::string> excluded;  // never use these devices
  int max_attempts = 0;            // 0: AttemptOptions::max_attempts
  // The call sees the client's own material: the policy's trust and region limits bind it
  // even under private_only (policy.h). Only a sub-task the decomposer found free of it is not.
  bool private_data = true;
  bool answer = false;             // its text is the final answer (streamed as such)
  bool stream = true;              // emit output deltas
};

struct CallResult {
  // A failed attempt whose streamed text the client had already received (the answer) or that
  // the answer continues from: paid for that part.
  struct Part {
    Selection chosen;
    int attempt = 0;
    int64_t tokens = 0;
  };
  std::vector<Part> earlier;
  Selection chosen;
  std::string output;
  int attempt = 0;
  int64_t tokens = 0;         // output tokens credited: what the coordinator counted, capped
                              // by what the worker claimed and by the call's max_tokens
  int64_t prompt_tokens = 0;
  std::string finish_reason = "stop";  // "stop", "length", "content_filter" or "tool_calls"
  std::string tool_calls_json;  // the model's tool calls (a JSON array), if it made any
  std::string logprobs_json;    // the tokens' log probabilities (a JSON array), when asked
};

// The attempts of one request, and how long the request waited on devices. Thread-safe.
class AttemptLog {
 public:
  explicit AttemptLog(Clock* clock) : clock_(clock) {}
  // `observer` sees each attempt as it is added (the console's live view); set before the
  // first call, called outside the log's lock, possibly from several threads.
  void Observe(std::function<void(const v1::Attempt&)> observer) { observer_ = std::move(observer); }
  void Add(v1::Attempt attempt);
  std::vector<v1::Attempt> attempts() const;
  // Marks a device call in flight / finished; the time during which at least one call was in
  // flight is the request's time waiting on devices.
  void CallStarted();
  void CallFinished();
  absl::Duration device_wait() const;

  // Output a device produced for the request and the coordinator received: every call that
  // succeeded, and what a call stopped by cancellation had sent until then (partial). What a
  // request that its client abandoned is settled for.
  struct Delivered {
    std::string sub_task_id;
    v1::ContributionRole role = v1::CONTRIBUTION_ROLE_EXECUTE;
    CallResult call;  // tokens: credited as for a finished call, capped the same way
    bool partial = false;
  };
  void AddDelivered(Delivered delivered);
  std::vector<Delivered> delivered() const;
  // Calls `visit` with each delivered call, under the log's lock (no copies; `visit` must not
  // call back into the log).
  void ForEachDelivered(absl::FunctionRef<void(const Delivered&)> visit) const;

  // Devices no call of this request may use (priced above what its client can afford), on
  // top of each call's own exclusions.
  void ExcludeDevices(std::set<std::string> devices);
  std::set<std::string> excluded_devices() const;

  // The request's policy: every call's device is chosen under it (null: none). Set before
  // the first call; not owned, must outlive the calls.
  void SetPolicy(const RequestPolicy* policy) { policy_ = policy; }
  const RequestPolicy* policy() const { return policy_; }
  // Which limits bound each call, once per call (the receipt's PolicyReport.applied).
  void NotePolicy(const std::string& sub_task_id, std::string note);
  std::vector<std::string> policy_notes() const;

 private:
  Clock* const clock_;
  std::function<void(const v1::Attempt&)> observer_;
  const RequestPolicy* policy_ = nullptr;
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, std::string>> policy_notes_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::Attempt> attempts_ ABSL_GUARDED_BY(mu_);
  std::vector<Delivered> delivered_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> excluded_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time busy_since_ ABSL_GUARDED_BY(mu_);
  absl::Duration busy_ ABSL_GUARDED_BY(mu_);
};

class AttemptRunner {
 public:
  // `metrics` may be null.
  AttemptRunner(AttemptOptions options, DeviceRegistry* registry, const ModelSelector* selector,
                DeviceClient* devices, Clock* clock, Metrics* metrics = nullptr);

  // UNAVAILABLE naming every failed attempt when no attempt succeeded; the first selection's
  // error (NOT_FOUND for an unknown model) when no device could be chosen at all; CANCELLED or
  // DEADLINE_EXCEEDED from the request; a non-retryable worker error as it came. When `cancel`
// fires, the attempt in flight stops at once (outcome CANCELLED) and what it produced until
// then is added to the log as delivered work.
  absl::StatusOr<CallResult> Run(const std::string& request_id, const CallSpec& spec,
                                 absl::Time deadline, Cancellation* cancel,
                                 const EventSink& sink, AttemptLog* log) const;

  const ModelSelector& selector() const { return *selector_; }
  DeviceRegistry* registry() const { return registry_; }

 private:
  class Call;  // one Run's attempts (attempt_runner.cc)

  const AttemptOptions options_;
  DeviceRegistry* const registry_;
  const ModelSelector* const selector_;
  DeviceClient* const devices_;
  Clock* const clock_;
  Metrics* const metrics_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_ATTEMPT_RUNNER_H_
