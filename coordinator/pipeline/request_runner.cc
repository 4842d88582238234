#include "coordinator/pipeline/request_runner.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/auto_model.h"
#include "common/categories.h"
#include "common/ids.h"
#include "common/openai_wire.h"
#include "common/status_macros.h"
#include "common/tokens.h"
#include "coordinator/pipeline/contributions.h"
#include "coordinator/pipeline/feedback.h"
#include "coordinator/pipeline/policy_report.h"
#include "ledger/pricing.h"

namespace loom {

namespace {

// The index of the request's ask (its last user message, else its last message); -1 if none.
int AskIndex(const v1::CompleteRequest& request) {
  for (int i = request.messages_size() - 1; i >= 0; --i) {
    if (request.messages(i).role() == "user") return i;
  }
  return request.messages_size() - 1;
}

}  // namespace

std::string LastUserMessage(const v1::CompleteRequest& request) {
  const int ask = AskIndex(request);
  return ask < 0 ? "" : request.messages(ask).content();
}

std::vector<v1::ChatMessage> ContextMessages(const v1::CompleteRequest& request) {
  const int ask = AskIndex(request);
  std::vector<v1::ChatMessage> out;
  for (int i = 0; i < request.messages_size(); ++i) {
    if (i < ask || (i > ask && request.messages(i).role() == "system")) out.push_back(request.messages(i));
  }
  return out;
}

RequestRunner::RequestRunner(RunnerOptions options, DeviceRegistry* registry,
                             const ModelSelector* selector, DeviceClient* devices,
                             LedgerStore* ledger, Clock* clock, Metrics* metrics)
    : options_(std::move(options)),
      registry_(registry),
      ledger_(ledger),
      clock_(clock),
      metrics_(metrics),
      analyzer_(options_.analyzer),
      attempts_(options_.attempts, registry, selector, devices, clock, metrics),
      decomposer_(options_.decomposer, &attempts_),
      executor_(&attempts_),
      synthesizer_(&attempts_),
      compete_(options_.compete, &attempts_),
      router_(options_.router, &attempts_) {}

absl::Status RequestRunner::Validate(const v1::CompleteRequest& request) const {
  if (request.messages().empty()) return absl::InvalidArgumentError("request has no messages");
  if (request.n() < 0 || request.n() > kMaxChoices) {
    return absl::InvalidArgumentError(absl::StrCat("n must be 1 to ", kMaxChoices));
  }
  if (!request.structure().logit_bias_json().empty() && request.model().empty()) {
    return absl::InvalidArgumentError(
        "'logit_bias' names token ids of one model's tokenizer: pin the model (\"model\": NAME) "
        "rather than loom-auto");
  }
  if (request.n() > 1 &&
      (request.mode() == v1::PLAN_KIND_COMPILED || request.mode() == v1::PLAN_KIND_COMPETE)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "n > 1 asks one model for several answers: it cannot be used with loom.mode ",
        request.mode() == v1::PLAN_KIND_COMPILED ? "compiled" : "compete"));
  }
  if (request.messages_size() > options_.max_messages) {
    return absl::InvalidArgumentError(absl::StrCat("request has ", request.messages_size(),
                                                   " messages; the limit is ",
                                                   options_.max_messages));
  }
  size_t total = 0;
  for (int i = 0; i < request.messages_size(); ++i) {
    const auto& m = request.messages(i);
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant" &&
        m.role() != "tool") {
      return absl::InvalidArgumentError(absl::StrCat(
          "messages[", i, "].role must be system, user, assistant or tool, not '", m.role(), "'"));
    }
    if (m.role() == "tool" && m.tool_call_id().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "] is a tool result without tool_call_id"));
    }
    if (m.content().size() > options_.max_message_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "] is ", m.content().size(),
                                                     " bytes; the limit is ",
                                                     options_.max_message_bytes));
    }
    total += m.content().size() + m.tool_calls_json().size();
  }
  if (total > options_.max_request_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("request is ", total, " bytes; the limit is ",
                                                   options_.max_request_bytes));
  }
  if (LastUserMessage(request).empty()) return absl::InvalidArgumentError("the prompt is empty");
  if (request.max_tokens() < 0 || request.max_tokens() > options_.max_output_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be 0-",
                                                   options_.max_output_tokens));
  }
  LOOM_RETURN_IF_ERROR(ValidRequestId(request.request_id()));
  if (!v1::PlanKind_IsValid(request.mode())) {
    return absl::InvalidArgumentError("unknown plan kind");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::FeedbackResponse> RequestRunner::Feedback(const std::string& client_id,
                                                             const v1::FeedbackRequest& request) {
  return ApplyFeedback(ledger_, options_.outcomes,
                       client_id.empty() ? options_.default_client : client_id, request);
}

v1::ListAffinitiesResponse RequestRunner::Affinities() const {
  return AffinityReport(attempts_.selector(), registry_->Snapshot(), options_.outcomes);
}

absl::Status RequestRunner::CheckCapabilities(
    const v1::CompleteRequest& request,
    const std::vector<std::pair<std::string, std::string>>& needs) const {
  if (needs.empty()) return absl::OkStatus();
  if (request.mode() == v1::PLAN_KIND_COMPILED || request.mode() == v1::PLAN_KIND_COMPETE) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", needs[0].second, "' needs one model to answer: it cannot be used with loom.mode ",
        request.mode() == v1::PLAN_KIND_COMPILED ? "compiled" : "compete"));
  }
  for (const auto& need : needs) {
    // Named, not a structured binding: clang 14 cannot capture bindings in the lambda.
    const std::string& capability = need.first;
    const std::string& field = need.second;
    bool served = false;
    registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
      for (const ModelGroup* g : groups) {
        const auto& caps = g->model().capabilities();
        served |= std::find(caps.begin(), caps.end(), capability) != caps.end() &&
                  (request.model().empty() || g->model().name() == request.model());
      }
    });
    if (!served) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", field, "' needs a model that supports ", capability, ", and ",
          request.model().empty() ? std::string("no model on this mesh")
                                  : absl::StrCat("the model '", request.model(), "'"),
          " advertises it"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::CompleteResponse> RequestRunner::Run(const v1::CompleteRequest& request,
                                                        absl::Time deadline,
                                                        const EventSink& sink,
                                                        Cancellation* cancel,
                                                        absl::Time arrived) {
  if (!request.model().empty() && options_.policies.IsNamed(request.model())) {
    return Run(WithNamedPolicy(request), deadline, sink, cancel, arrived);
  }
  RequestLog* const recent = options_.recent;
  if (recent == nullptr) return RunUnlogged(request, deadline, sink, cancel, arrived, nullptr);
  std::string logged;  // the ledger id, once claimed
  EventSink tee;
  if (sink) {
    tee = [&](const v1::CompleteEvent& e) {
      // The plan and the attempts reach the log whether or not a client streams (Execute,
      // AttemptLog::Observe); a stream adds the sub-tasks' starts.
      if (!logged.empty() && e.has_sub_task()) recent->Event(logged, e);
      sink(e);
    };
  }
  absl::StatusOr<v1::CompleteResponse> result =
      RunUnlogged(request, deadline, tee, cancel, arrived, &logged);
  if (!logged.empty()) recent->End(logged, result);
  return result;
}

// Long on purpose: the request's stages in order (validate, claim the id, analyze, reserve,
// run, settle or release, respond), each a call with its error path beside it.
absl::StatusOr<v1::CompleteResponse> RequestRunner::RunUnlogged(
    const v1::CompleteRequest& request, absl::Time deadline, const EventSink& sink,
    Cancellation* cancel, absl::Time arrived, std::string* logged) {
  const absl::Time start = clock_->Now();
  if (arrived == absl::InfinitePast() || arrived > start) arrived = start;
  v1::Timings timings;
  timings.set_queued_us(absl::ToInt64Microseconds(start - arrived));
  LOOM_RETURN_IF_ERROR(Validate(request));
  LOOM_ASSIGN_OR_RETURN(RequestPolicy policy, options_.policies.Resolve(request));
  // Tools and JSON output go to one model that advertises them: no decomposition, no compete.
  const auto needs = NeededCapabilities(request.structure(), request.messages());
  LOOM_RETURN_IF_ERROR(CheckCapabilities(request, needs));
  if (metrics_) metrics_->RecordModel(request.model().empty() ? kAutoModel : request.model());
  deadline = std::min(deadline, clock_->Now() + options_.request_timeout);
  const std::string client_account = ClientAccount(
      request.client_id().empty() ? options_.default_client : request.client_id());
  // A client's own id is scoped to its account in the ledger, so clients cannot see or take
  // each other's ids; the client is answered with the id it sent.
  const bool client_named = !request.request_id().empty() && !request.request_id_assigned();
  const std::string request_id =
      request.request_id().empty() ? NewUuid()
      : client_named               ? ScopedRequestId(client_account, request.request_id())
                                   : request.request_id();
  // One request per id at a time on this coordinator (the ledger's reservation does the same
  // across coordinators): a duplicate waits for the first, then gets its answer below.
  LOOM_RETURN_IF_ERROR(ClaimId(request_id, deadline, cancel));
  absl::Cleanup unclaim = [&] { UnclaimId(request_id); };
  if (logged != nullptr) {
    options_.recent->Begin(request_id, client_named ? request.request_id() : request_id,
                           client_account, request);
    *logged = request_id;
  }
  const int64_t max_tokens = AnswerTokenBound(request);
  // Budget first: nothing runs for a client who cannot pay for it.
  Analysis analysis = analyzer_.Analyze(request, max_tokens);
  const int choices = std::max(1, request.n());
  if (!needs.empty() || choices > 1 || !request.structure().logit_bias_json().empty()) {
    analysis.kind = v1::PLAN_KIND_PASSTHROUGH;
  }
  if (policy.HasLimits() || policy.all.Soft()) {
    std::vector<std::string> limits = policy.LimitTexts();
    analysis.reasons.push_back(absl::StrCat(
        "policy ", policy.name, limits.empty() ? "" : ": ", absl::StrJoin(limits, "; ")));
  }
  // An unclear request may be shown to a router model first (when the budget allows).
  const bool may_consult = needs.empty() && choices == 1 &&
                           request.structure().logit_bias_json().empty() &&
                           router_.ShouldConsult(analysis, request);
  LOOM_ASSIGN_OR_RETURN(Budget budget, PlanBudget(request, request_id, client_account, max_tokens,
                                                  choices, may_consult, &policy, &analysis));
  const int64_t bound = budget.bound;
  const bool consult = budget.consult;
  const bool may_compile = budget.may_compile;
  const absl::Time reserve_start = clock_->Now();
  timings.set_analyze_us(absl::ToInt64Microseconds(reserve_start - start));
  const absl::Status reserved = ledger_->Reserve(
      request_id, client_account, bound, options_.request_timeout + options_.reservation_margin);
  timings.set_reserve_us(absl::ToInt64Microseconds(clock_->Now() - reserve_start));
  if (absl::IsAlreadyExists(reserved)) {
    // Settled before: hand back the answer it paid for, if it is still kept; never run again.
    return Replay(request, request_id, reserved, sink);
  }
  AttemptLog log(clock_);
  log.SetPolicy(&policy);
  if (logged != nullptr) {
    log.Observe([recent = options_.recent, &request_id](const v1::Attempt& a) {
      recent->Attempt(request_id, a);
    });
  }
  if (!budget.too_dear.empty()) log.ExcludeDevices(std::move(budget.too_dear));
  std::optional<CallResult> route_call;
  if (reserved.ok() && consult) {
    RouterResult routed =
        router_.Consult({request_id, deadline, cancel, nullptr, &log, clock_}, LastUserMessage(request));
    if (routed.verdict) {
      ModelRouter::Apply(*routed.verdict, may_compile, &analysis);
    }
    analysis.reasons.push_back(routed.note);
    route_call = std::move(routed.call);
  }
  absl::StatusOr<v1::CompleteResponse> response =
      reserved.ok() ? Execute(request, analysis, request_id, client_account, deadline, sink, cancel,
                              arrived, timings, &log, route_call)
                    : absl::StatusOr<v1::CompleteResponse>(reserved);
  // The client went away: settle for what was produced until then (this consumes or
  // releases the reservation).
  bool settled = false;
  if (reserved.ok() && absl::IsCancelled(response.status()) && cancel && cancel->IsCancelled()) {
    response = SettleAbandoned(request_id, client_account, log);
    settled = true;
  }
  if (metrics_) {
    metrics_->RecordRequest(analysis.kind, response.status(), clock_->Now() - arrived);
    if (response.ok()) {
      metrics_->RecordOverhead(absl::Microseconds(response->coordinator_overhead_us()));
      metrics_->RecordSettlement(response->cost_micro());
    }
  }
  // Only a reservation this call made is released (a refused one may belong to another call).
  if (reserved.ok() && !response.ok() && !settled) ReleaseReservation(request_id);
  return response;
}

void RequestRunner::PlanRun::StageDone(void (v1::Timings::*set)(int64_t)) {
  const absl::Time now = scope.clock->Now();
  (timings.*set)(absl::ToInt64Microseconds(now - stage_start));
  stage_start = now;
}

void RequestRunner::EmitPlan(PlanRun& run) const {
  AddTentativeAssignments(&run.plan, run.request, *run.scope.log->policy());
  if (options_.recent != nullptr) options_.recent->Plan(run.scope.request_id, run.plan);
  if (!run.scope.emit) return;
  v1::CompleteEvent e;
  *e.mutable_plan() = run.plan;
  run.scope.emit(e);
}

absl::StatusOr<v1::CompleteResponse> RequestRunner::Execute(const v1::CompleteRequest& request,
                                                            const Analysis& analysis,
                                                            const std::string& request_id,
                                                            const std::string& client_account,
                                                            absl::Time deadline,
                                                            const EventSink& sink,
                                                            Cancellation* cancel,
                                                            absl::Time arrived,
                                                            v1::Timings timings,
                                                            AttemptLog* log,
                                                            const std::optional<CallResult>& route_call) {
  // Stages may emit from several threads (fan-out, compete); the sink sees one at a time.
  // Without a sink (a unary request) the stages build no events.
  absl::Mutex sink_mu;
  EventSink emit;
  if (sink) {
    emit = [&](const v1::CompleteEvent& e) {
      absl::MutexLock lock(&sink_mu);
      sink(e);
    };
  }
  PlanRun run{.scope = {request_id, deadline, cancel, std::move(emit), log, clock_},
              .request = request,
              .analysis = analysis,
              .text = LastUserMessage(request),
              .context = ContextMessages(request),
              .max_tokens = AnswerTokenBound(request),
              .arrived = arrived,
              .timings = std::move(timings),
              .stage_start = clock_->Now()};
  // The client is told the id it knows (its own, not the ledger's scoped form).
  const std::string& client_id = request.request_id().empty() ? request_id : request.request_id();
  run.plan = BasePlan(analysis, client_id);
  run.response.set_request_id(client_id);
  if (route_call) {
    AddRecords(&run.records, request_id, "route", v1::CONTRIBUTION_ROLE_ROUTE, *route_call,
               clock_->Now());
  }
  absl::Status ran = run.plan.kind() == v1::PLAN_KIND_COMPILED ? RunCompiled(run)
                     : run.plan.kind() == v1::PLAN_KIND_COMPETE ? RunCompete(run)
                                                                 : RunPassthrough(run);
  LOOM_RETURN_IF_ERROR(ran);
  return SettleAndRespond(run, client_account);
}

absl::StatusOr<v1::CompleteResponse> RequestRunner::SettleAndRespond(
    PlanRun& run, const std::string& client_account) const {
  const v1::CompleteRequest& request = run.request;
  const std::string& request_id = run.scope.request_id;
  AttemptLog& log = *run.scope.log;
  v1::CompleteResponse& response = run.response;
  std::vector<v1::ContributionRecord>& records = run.records;
  v1::Timings& timings = run.timings;
  const int64_t total_tokens = SetWeights(&records);
  int64_t prompt_tokens = 0;
  for (const auto& m : request.messages()) prompt_tokens += CountTokens(m.content());
  response.mutable_usage()->set_prompt_tokens(prompt_tokens);
  response.mutable_usage()->set_completion_tokens(total_tokens);
  // A client that named the request may send it again (a retry after a lost answer): keep
  // what a replay needs, in the settlement's own transaction.
  std::string answer;
  if (!request.request_id().empty() && !request.request_id_assigned()) {
    v1::CompleteResponse kept = response;
    kept.mutable_plan()->set_kind(run.plan.kind());
    *kept.mutable_plan()->mutable_categories() = run.plan.categories();
    for (const auto& r : records) *kept.add_contributions() = r;
    answer = kept.SerializeAsString();
  }
  const absl::Time settle_start = clock_->Now();
  absl::StatusOr<Settlement> settlement = ledger_->Settle({.request_id = request_id,
                                                          .client_account = client_account,
                                                          .records = records,
                                                          .answer = std::move(answer)});
  timings.set_settle_us(absl::ToInt64Microseconds(clock_->Now() - settle_start));
  if (!settlement.ok()) {
    spdlog::error("request {}: settlement failed, nothing charged or paid: {}", request_id,
                  settlement.status().ToString());
    return absl::Status(settlement.status().code(),
                        absl::StrCat("request ", request_id,
                                     " ran but could not be settled, so its answer is withheld "
                                     "and nothing was charged: ",
                                     settlement.status().message()));
  }

  *response.mutable_plan() = run.plan;
  for (const v1::Attempt& a : log.attempts()) *response.add_attempts() = a;
  for (const auto& r : records) *response.add_contributions() = r;
  response.set_cost_micro(settlement->charged_micro);
  response.set_settlement_id(settlement->settlement_id);
  if (log.policy()) *response.mutable_policy() = PolicyReportFor(*log.policy(), log);
  timings.set_device_wait_us(absl::ToInt64Microseconds(log.device_wait()));
  timings.set_total_us(absl::ToInt64Microseconds(clock_->Now() - run.arrived));
  const int64_t overhead = timings.total_us() - timings.device_wait_us() - timings.reserve_us() -
                           timings.settle_us();
  response.set_coordinator_overhead_us(std::max<int64_t>(0, overhead));
  *response.mutable_timings() = timings;
  spdlog::info("request {} {}: {} record(s), {} tokens, {} micro-credits, overhead {} us",
               request_id, v1::PlanKind_Name(run.plan.kind()), records.size(), total_tokens,
               settlement->charged_micro, response.coordinator_overhead_us());
  if (run.scope.emit) {
    v1::CompleteEvent final_event;
    *final_event.mutable_final() = response;
    run.scope.emit(final_event);
  }
  return response;
}

void RequestRunner::ReleaseReservation(const std::string& request_id) {
  if (absl::Status released = ledger_->Release(request_id); !released.ok()) {
    spdlog::error("request {}: releasing its reservation failed ({}); the ledger retries it "
                  "with its next write",
                  request_id, released.ToString());
  }
}

absl::Status RequestRunner::SettleAbandoned(const std::string& request_id,
                                             const std::string& client_account,
                                             const AttemptLog& log) {
  std::vector<v1::ContributionRecord> records;
  for (const AttemptLog::Delivered& d : log.delivered()) {
    const std::string sub_task = d.role == v1::CONTRIBUTION_ROLE_DECOMPOSE    ? "decompose"
                                 : d.role == v1::CONTRIBUTION_ROLE_SYNTHESIZE ? "synthesis"
                                 : d.role == v1::CONTRIBUTION_ROLE_JUDGE      ? "judge"
                                 : d.role == v1::CONTRIBUTION_ROLE_ROUTE      ? "route"
                                                                              : d.sub_task_id;
    AddRecords(&records, request_id, sub_task, d.role, d.call, clock_->Now());
  }
  const int64_t tokens = SetWeights(&records);
  if (records.empty() || tokens == 0) {
    ReleaseReservation(request_id);
    spdlog::info("request {} abandoned by its client before any output: nothing charged",
                 request_id);
    return absl::CancelledError(absl::StrCat(
        "request ", request_id, " was cancelled before any output; nothing was charged"));
  }
  absl::StatusOr<Settlement> settlement = ledger_->Settle(
      {.request_id = request_id, .client_account = client_account, .records = records});
  if (!settlement.ok()) {
    spdlog::error("request {}: settling it as abandoned failed, nothing charged or paid: {}",
                  request_id, settlement.status().ToString());
    ReleaseReservation(request_id);
    return absl::CancelledError(absl::StrCat("request ", request_id,
                                             " was cancelled; settling its partial work failed: ",
                                             settlement.status().message()));
  }
  if (metrics_) metrics_->RecordSettlement(settlement->charged_micro);
  spdlog::info("request {} abandoned by its client: settled for {} tokens produced until then "
               "({} record(s), {} micro-credits, settlement {})",
               request_id, tokens, records.size(), settlement->charged_micro,
               settlement->settlement_id);
  return absl::CancelledError(absl::StrCat(
      "request ", request_id, " was cancelled by its client; charged ", settlement->charged_micro,
      " micro-credits for the ", tokens, " output tokens produced until then (settlement ",
      settlement->settlement_id, ")"));
}

}  // namespace loom
