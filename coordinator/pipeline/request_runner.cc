#include "coordinator/pipeline/request_runner.h"

#include <algorithm>
#include <cmath>

#include <spdlog/spdlog.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/categories.h"
#include "common/ids.h"
#include "common/openai_wire.h"
#include "common/status_macros.h"
#include "common/tokens.h"
#include "coordinator/pipeline/feedback.h"
#include "coordinator/pipeline/policy_report.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

std::string LastUserMessage(const v1::CompleteRequest& request) {
  for (int i = request.messages_size() - 1; i >= 0; --i) {
    if (request.messages(i).role() == "user") return request.messages(i).content();
  }
  return request.messages().empty() ? "" : request.messages().rbegin()->content();
}

std::vector<v1::ChatMessage> SystemMessages(const v1::CompleteRequest& request) {
  std::vector<v1::ChatMessage> out;
  for (const auto& m : request.messages()) {
    if (m.role() == "system") out.push_back(m);
  }
  return out;
}

// What a record's work was, for the feedback on it (ContributionRecord.category, in_answer).
struct RecordKind {
  v1::TaskCategory category = v1::TASK_CATEGORY_UNSPECIFIED;
  bool in_answer = false;
};

v1::ContributionRecord Record(const std::string& request_id, const std::string& sub_task_id,
                              v1::ContributionRole role, const CallResult& call, absl::Time now,
                              RecordKind kind = {}) {
  v1::ContributionRecord r;
  r.set_category(kind.category);
  r.set_in_answer(kind.in_answer);
  r.set_request_id(request_id);
  r.set_device_id(call.chosen.device_id);
  r.set_provider_id(call.chosen.provider_id);
  r.set_model(call.chosen.model.name());
  r.set_sub_task_id(sub_task_id);
  r.set_role(role);
  r.set_token_count(call.tokens);
  r.set_credits_micro(CreditsForTokens(call.tokens, PricePer1kMicro(call.chosen.model)));
  r.set_attempt(call.attempt);
  r.set_created_unix_ms(absl::ToUnixMillis(now));
  return r;
}

// The records of one call: the streamed parts of its failed attempts that were kept or seen
// (CallResult::earlier), then the attempt that finished.
void AddRecords(std::vector<v1::ContributionRecord>* records, const std::string& request_id,
                const std::string& sub_task_id, v1::ContributionRole role, const CallResult& call,
                absl::Time now, RecordKind kind = {}) {
  for (const CallResult::Part& part : call.earlier) {
    CallResult paid;
    paid.chosen = part.chosen;
    paid.attempt = part.attempt;
    paid.tokens = part.tokens;
    records->push_back(Record(request_id, sub_task_id, role, paid, now, {kind.category, false}));
  }
  records->push_back(Record(request_id, sub_task_id, role, call, now, kind));
}

// A compete candidate that did not win: its credits at `share`, rounded down.
int64_t ParticipantCredits(int64_t credits, double share) {
  if (share >= 1.0) return credits;
  return static_cast<int64_t>(std::floor(static_cast<double>(credits) * std::max(0.0, share)));
}

std::string PayoutRule(double share) {
  return absl::StrFormat("winner paid in full; each other candidate %.0f%% of its tokens' price",
                         100 * std::min(1.0, std::max(0.0, share)));
}

// Weights: each record's share of the request's tokens. Returns the total.
int64_t SetWeights(std::vector<v1::ContributionRecord>* records) {
  int64_t total_tokens = 0;
  for (const auto& r : *records) total_tokens += r.token_count();
  for (auto& r : *records) {
    r.set_weight(total_tokens > 0 ? static_cast<double>(r.token_count()) / total_tokens
                                  : 1.0 / records->size());
  }
  return total_tokens;
}

v1::SubTaskResult Result(const v1::SubTask& task, const std::string& input,
                         const CallResult& call) {
  v1::SubTaskResult r;
  r.set_sub_task_id(task.id());
  r.set_output(call.output);
  r.set_device_id(call.chosen.device_id);
  r.set_model(call.chosen.model.name());
  r.set_input(input);
  r.set_category(task.category());
  return r;
}

}  // namespace

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

v1::CompilationPlan RequestRunner::BasePlan(const Analysis& analysis,
                                            const std::string& request_id) const {
  v1::CompilationPlan plan;
  plan.set_request_id(request_id);
  plan.set_kind(analysis.kind);
  for (const auto& c : analysis.categories) *plan.add_categories() = c;
  plan.set_estimated_tokens(analysis.estimated_tokens);
  for (const auto& r : analysis.reasons) plan.add_reasons(r);
  if (analysis.kind == v1::PLAN_KIND_COMPETE) {
    // Told before it pays: the reservation counts every candidate at full price.
    plan.add_reasons(absl::StrCat("compete payout: ", PayoutRule(options_.compete.participant_share)));
  }
  return plan;
}

void RequestRunner::AddTentativeAssignments(v1::CompilationPlan* plan,
                                            const v1::CompleteRequest& request,
                                            const RequestPolicy& policy) const {
  CandidateSource& devices = *registry_;
  const ModelSelector& selector = attempts_.selector();
  if (plan->kind() == v1::PLAN_KIND_COMPETE) {
    for (const Selection& s : selector.RankDistinctModels(devices, plan->categories(0).category(),
                                                          options_.compete.k, &policy.all)) {
      v1::Assignment* a = plan->add_assignments();
      a->set_sub_task_id(absl::StrCat("compete-", plan->assignments_size()));
      a->set_device_id(s.device_id);
      a->set_model(s.model.name());
      a->set_score(s.score);
      a->set_reason(s.reason);
    }
    return;
  }
  const bool pinned = !request.model().empty() || !request.family().empty();
  for (const auto& task : plan->sub_tasks()) {
    const SelectionPolicy* p =
        &policy.For(plan->kind() != v1::PLAN_KIND_COMPILED || task.private_data());
    absl::StatusOr<Selection> s =
        pinned && plan->kind() == v1::PLAN_KIND_PASSTHROUGH
            ? selector.SelectPassthrough(devices, {request.model(), request.family()}, {}, p)
            : selector.SelectForCategories(devices, {task.category()}, {}, p);
    v1::Assignment* a = plan->add_assignments();
    a->set_sub_task_id(task.id());
    if (s.ok()) {
      a->set_device_id(s->device_id);
      a->set_model(s->model.name());
      a->set_score(s->score);
      a->set_reason(s->reason);
    } else {
      a->set_reason(std::string(s.status().message()));
    }
  }
}

absl::StatusOr<v1::FeedbackResponse> RequestRunner::Feedback(const std::string& client_id,
                                                             const v1::FeedbackRequest& request) {
  return ApplyFeedback(ledger_, options_.outcomes,
                       client_id.empty() ? options_.default_client : client_id, request);
}

v1::ListAffinitiesResponse RequestRunner::Affinities() const {
  return AffinityReport(attempts_.selector(), registry_->Snapshot(), options_.outcomes);
}

absl::StatusOr<v1::CompilationPlan> RequestRunner::Explain(const v1::CompleteRequest& request) {
  if (!request.model().empty() && options_.policies.IsNamed(request.model())) {
    return Explain(WithNamedPolicy(request));
  }
  LOOM_RETURN_IF_ERROR(Validate(request));
  LOOM_ASSIGN_OR_RETURN(const RequestPolicy policy, options_.policies.Resolve(request));
  const int64_t max_tokens = AnswerTokenBound(request);
  Analysis analysis = analyzer_.Analyze(request, max_tokens);
  if (router_.ShouldConsult(analysis, request)) {
    analysis.reasons.push_back("when run, a router model is asked what this request is (the "
                               "classifier is unsure); it may change the category");
  }
  v1::CompilationPlan plan =
      BasePlan(analysis, request.request_id().empty() ? NewUuid() : request.request_id());
  if (plan.kind() == v1::PLAN_KIND_COMPILED) {
    Decomposition d = TaskDecomposer::FromRules(analysis, options_.decomposer.sub_task_tokens);
    for (auto& t : d.sub_tasks) *plan.add_sub_tasks() = t;
    plan.set_synthesis_prompt(d.synthesis_prompt);
    plan.set_decomposer(d.method);
    if (options_.decomposer.mode != DecomposerOptions::Mode::kRules) {
      plan.add_reasons("shown with the rule-based decomposer; when run, a decomposer model on "
                       "the mesh (if one is available) may split it differently");
    }
  } else if (plan.kind() == v1::PLAN_KIND_PASSTHROUGH) {
    v1::SubTask* task = plan.add_sub_tasks();
    task->set_id(NewUuid());
    task->set_prompt(LastUserMessage(request));
    task->set_category(plan.categories(0).category());
    task->set_estimated_tokens(max_tokens);
  }
  if (policy.HasLimits() || policy.all.Soft()) {
    std::vector<std::string> limits = policy.LimitTexts();
    plan.add_reasons(absl::StrCat("policy ", policy.name, limits.empty() ? "" : ": ",
                                  absl::StrJoin(limits, "; ")));
  }
  AddTentativeAssignments(&plan, request, policy);
  return plan;
}

int64_t RequestRunner::AnswerTokenBound(const v1::CompleteRequest& request) const {
  if (request.max_tokens() > 0) return request.max_tokens();
  int64_t bound = 0;
  registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) {
      const int64_t limit = g->model().max_output_tokens() > 0
                                ? g->model().max_output_tokens()
                                : options_.unadvertised_max_output_tokens;
      bound = std::max(bound, limit);
    }
  });
  return std::min(bound > 0 ? bound : options_.unadvertised_max_output_tokens,
                  options_.max_output_tokens);
}

absl::StatusOr<int64_t> RequestRunner::CostBound(const Analysis& analysis, int64_t max_tokens,
                                                 int64_t price,
                                                 const SelectionPolicy* policy) const {
  if (price < 0) {
    price = 0;
    registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
      for (const ModelGroup* g : groups) {
        if (policy && policy->PriceFails(g->model())) continue;
        price = std::max(price, PricePer1kMicro(g->model()));
      }
    });
  }
  int64_t tokens = max_tokens;
  if (analysis.kind == v1::PLAN_KIND_COMPETE) {
    tokens = options_.compete.k * max_tokens + 16;  // candidates and a judge
  } else if (analysis.kind == v1::PLAN_KIND_COMPILED) {
    // decomposer + the largest graph it may return + a synthesis as long as all its parts
    const int64_t graph =
        options_.decomposer.max_sub_tasks * 4 * options_.decomposer.sub_task_tokens;
    tokens = 1024 + graph + (graph + 128);
  }
  // Rounded up, so the bound is never below what CreditsForTokens can charge; the fee on top,
  // so that a request admitted is a request that can settle. Checked: prices are bounded at
  // registration, and a bound that still overflows is refused, never wrapped.
  int64_t product = 0, bound = 0;
  if (__builtin_mul_overflow(tokens, price, &product) || product > INT64_MAX - 999 ||
      __builtin_add_overflow((product + 999) / 1000, ledger_->FeeFor((product + 999) / 1000), &bound)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the cost bound of ", tokens, " tokens at ", price,
        " micro-credits per 1k overflows; ask for fewer max_tokens"));
  }
  return bound;
}

absl::Status RequestRunner::FitMaxCost(const Analysis& analysis, int64_t max_tokens, int choices,
                                       RequestPolicy* policy, int64_t* bound) const {
  const int64_t cap = policy->max_cost_micro / std::max(1, choices);
  if (policy->max_cost_micro <= 0 || *bound <= cap) return absl::OkStatus();
  std::set<int64_t, std::greater<>> prices;
  registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) {
      if (!policy->all.PriceFails(g->model())) prices.insert(PricePer1kMicro(g->model()));
    }
  });
  for (int64_t price : prices) {
    absl::StatusOr<int64_t> at = CostBound(analysis, max_tokens, price);
    if (!at.ok() || *at > cap) continue;
    *bound = *at;
    policy->all.max_price_per_1k_micro = policy->wide.max_price_per_1k_micro = price;
    return absl::OkStatus();
  }
  const int64_t cheapest = prices.empty() ? 0 : *prices.rbegin();
  absl::StatusOr<int64_t> at_cheapest = CostBound(analysis, max_tokens, cheapest);
  return PolicyUnmetError(absl::StrCat(
      "no device meets the policy ", policy->name, ": cost <= ",
      FormatCredits(policy->max_cost_micro), " credits is below this request's cost bound (",
      at_cheapest.ok() ? FormatCredits(*at_cheapest * std::max(1, choices)) : std::string("?"),
      " credits for up to ", max_tokens, " output tokens at the cheapest price allowed, ",
      FormatCredits(cheapest), " credits/1k); raise max_cost or lower max_tokens; nothing was "
      "charged"));
}

v1::CompleteRequest RequestRunner::WithNamedPolicy(const v1::CompleteRequest& request) const {
  v1::CompleteRequest out = request;
  if (out.policy().name().empty()) out.mutable_policy()->set_name(request.model());
  out.clear_model();
  return out;
}

RequestRunner::Affordable RequestRunner::AffordableFor(const std::string& client_account,
                                                      const Analysis& analysis,
                                                      int64_t max_tokens, int64_t bound) const {
  Affordable out{bound, {}};
  absl::StatusOr<int64_t> available = ledger_->Available(client_account);
  if (!available.ok() || *available >= bound) return out;
  std::set<int64_t, std::greater<>> prices;
  registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) prices.insert(PricePer1kMicro(g->model()));
  });
  for (int64_t price : prices) {
    absl::StatusOr<int64_t> at = CostBound(analysis, max_tokens, price);
    if (!at.ok() || *at > *available) continue;
    out.bound = *at;
    registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
      for (const ModelGroup* g : groups) {
        if (PricePer1kMicro(g->model()) <= price) continue;
        g->ForEachHealthy([&](const v1::DeviceInfo& d, double) {
          out.too_dear.insert(d.device_id());
          return true;
        });
      }
    });
    return out;
  }
  return out;  // not even the cheapest: the reservation refuses it (402)
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
  if (!needs.empty()) {
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
  }
  if (metrics_) metrics_->RecordModel(request.model().empty() ? "loom-auto" : request.model());
  deadline = std::min(deadline, absl::Now() + options_.request_timeout);
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
  LOOM_ASSIGN_OR_RETURN(int64_t bound, CostBound(analysis, max_tokens, -1, &policy.all));
  if (policy.HasLimits() || policy.all.Soft()) {
    std::vector<std::string> limits = policy.LimitTexts();
    analysis.reasons.push_back(absl::StrCat(
        "policy ", policy.name, limits.empty() ? "" : ": ", absl::StrJoin(limits, "; ")));
  }
  // An unclear request may be shown to a router model first: its call is reserved for, and
  // so is a compiled plan when the client can afford one (the router may find several asks).
  // Not under a cost limit: the bound is kept to the plan itself.
  bool consult = needs.empty() && choices == 1 && request.structure().logit_bias_json().empty() &&
                 policy.max_cost_micro == 0 && router_.ShouldConsult(analysis, request);
  bool may_compile = false;
  if (consult) {
    Analysis routed = analysis;
    routed.kind = v1::PLAN_KIND_PASSTHROUGH;
    LOOM_ASSIGN_OR_RETURN(int64_t route_bound,
                          CostBound(routed, options_.router.max_tokens));
    routed.kind = v1::PLAN_KIND_COMPILED;
    LOOM_ASSIGN_OR_RETURN(int64_t compiled_bound, CostBound(routed, max_tokens));
    absl::StatusOr<int64_t> available = ledger_->Available(client_account);
    may_compile = analysis.kind == v1::PLAN_KIND_PASSTHROUGH && available.ok() &&
                  *available >= compiled_bound + route_bound;
    bound = (may_compile ? std::max(bound, compiled_bound) : bound) + route_bound;
  }
  // A device priced above the client's budget is left out for this client, rather than the
  // client refused for the whole mesh. (A request pinned to a model keeps the mesh's bound.)
  Affordable affordable;
  if (!request.model().empty() || !request.family().empty()) {
    // Pinned: the devices that can serve it set the price, not the rest of the mesh.
    int64_t pinned_price = -1;
    registry_->Read([&](absl::Span<const ModelGroup* const> groups, int) {
      for (const ModelGroup* g : groups) {
        if ((request.model().empty() || g->model().name() == request.model()) &&
            (request.family().empty() || g->model().family() == request.family()) &&
            !policy.all.PriceFails(g->model())) {
          pinned_price = std::max(pinned_price, PricePer1kMicro(g->model()));
        }
      }
    });
    if (pinned_price >= 0) {
      LOOM_ASSIGN_OR_RETURN(bound, CostBound(analysis, max_tokens, pinned_price));
    }
  } else {
    affordable = AffordableFor(client_account, analysis, max_tokens, bound);
    if (!affordable.too_dear.empty()) {
      spdlog::info("request {}: {} cannot afford {} device(s); served by the others",
                   request_id, client_account, affordable.too_dear.size());
      bound = affordable.bound;  // sized for the plan alone: no router call on a tight budget
      if (consult) {
        consult = false;
        analysis.reasons.push_back(
            "router not asked: the client's credits do not cover the whole mesh; the "
            "classifier's verdict stands");
      }
    }
  }
  LOOM_RETURN_IF_ERROR(FitMaxCost(analysis, max_tokens, choices, &policy, &bound));
  // Every choice is an answer the client pays for.
  if (__builtin_mul_overflow(bound, static_cast<int64_t>(choices), &bound)) {
    return absl::OutOfRangeError("the cost bound of this request overflows");
  }
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
  if (!affordable.too_dear.empty()) log.ExcludeDevices(std::move(affordable.too_dear));
  std::optional<CallResult> route_call;
  if (reserved.ok() && consult) {
    RouterResult routed = router_.Consult(request_id, LastUserMessage(request), deadline, cancel, &log);
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

absl::StatusOr<v1::CompleteResponse> RequestRunner::Execute(const v1::CompleteRequest& request,
                                                            const Analysis& analysis,
                                                            const std::string& request_id,
                                                            const std::string& client_account,
                                                            absl::Time deadline,
                                                            const EventSink& sink,
                                                            Cancellation* cancel,
                                                            absl::Time arrived,
                                                            v1::Timings timings,
                                                            AttemptLog* log_ptr,
                                                            const std::optional<CallResult>& route_call) {
  AttemptLog& log = *log_ptr;
  // Stage clocks: each stage's wall time goes into `timings`.
  absl::Time stage_start = clock_->Now();
  auto stage_done = [&](auto set) {
    const absl::Time now = clock_->Now();
    set(absl::ToInt64Microseconds(now - stage_start));
    stage_start = now;
  };
  const int64_t max_tokens = AnswerTokenBound(request);
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
  const std::string text = LastUserMessage(request);
  const std::vector<v1::ChatMessage> system = SystemMessages(request);

  // The client is told the id it knows (its own, not the ledger's scoped form).
  const std::string& client_id = request.request_id().empty() ? request_id : request.request_id();
  v1::CompilationPlan plan = BasePlan(analysis, client_id);
  v1::CompleteResponse response;
  response.set_request_id(client_id);
  std::vector<v1::ContributionRecord> records;
  if (route_call) {
    AddRecords(&records, request_id, "route", v1::CONTRIBUTION_ROLE_ROUTE, *route_call, clock_->Now());
  }
  auto emit_plan = [&] {
    AddTentativeAssignments(&plan, request, *log.policy());
    if (options_.recent != nullptr) options_.recent->Plan(request_id, plan);
    if (!emit) return;
    v1::CompleteEvent e;
    *e.mutable_plan() = plan;
    emit(e);
  };

  switch (plan.kind()) {
    case v1::PLAN_KIND_COMPILED: {
      // Decomposition happens before there is a plan to show; its attempts are in the log,
      // and the stream starts with the plan, as StreamComplete promises.
      const EventSink quiet;  // empty: no events
      Decomposition d =
          decomposer_.Decompose(request_id, analysis, text, deadline, cancel, quiet, &log);
      stage_done([&](int64_t us) { timings.set_decompose_us(us); });
      for (const auto& t : d.sub_tasks) *plan.add_sub_tasks() = t;
      plan.set_synthesis_prompt(d.synthesis_prompt);
      plan.set_decomposer(d.method);
      if (!d.note.empty()) plan.add_reasons(d.note);
      emit_plan();
      if (d.model_call) {
        AddRecords(&records, request_id, "decompose", v1::CONTRIBUTION_ROLE_DECOMPOSE,
                                 *d.model_call, clock_->Now());
      }
      LOOM_ASSIGN_OR_RETURN(std::vector<SubTaskOutcome> outcomes,
                            executor_.Run(request_id, d.sub_tasks, system, deadline, cancel,
                                          emit, &log, request.sampling()));
      stage_done([&](int64_t us) { timings.set_execute_us(us); });
      for (const auto& o : outcomes) {
        *response.add_results() = Result(o.task, o.input, o.result);
        AddRecords(&records, request_id, o.task.id(), v1::CONTRIBUTION_ROLE_EXECUTE, o.result,
                   clock_->Now(), {o.task.category(), /*in_answer=*/true});
      }
      if (outcomes.size() == 1) {
        response.set_output(outcomes[0].result.output);
        response.set_finish_reason(outcomes[0].result.finish_reason);
        if (emit) {
          v1::CompleteEvent e;
          e.mutable_output()->set_sub_task_id(outcomes[0].task.id());
          e.mutable_output()->set_text(outcomes[0].result.output);
          e.mutable_output()->set_answer(true);
          emit(e);
        }
        break;
      }
      LOOM_ASSIGN_OR_RETURN(Synthesis s,
                            synthesizer_.Synthesize(request_id, text, d.synthesis_prompt, outcomes,
                                                    system, deadline, cancel, emit, &log,
                                                    request.sampling()));
      stage_done([&](int64_t us) { timings.set_synthesize_us(us); });
      response.set_output(s.output);
      response.set_synthesis_note(s.note);
      response.set_finish_reason(s.call ? s.call->finish_reason : "stop");
      if (s.call) {
        AddRecords(&records, request_id, "synthesis", v1::CONTRIBUTION_ROLE_SYNTHESIZE,
                                 *s.call, clock_->Now());
      }
      break;
    }
    case v1::PLAN_KIND_COMPETE: {
      emit_plan();
      const std::vector<v1::ChatMessage> messages(request.messages().begin(),
                                                  request.messages().end());
      LOOM_ASSIGN_OR_RETURN(
          CompeteOutcome c,
          compete_.Run(request_id, messages, plan.categories(0).category(), request.max_tokens(),
                       max_tokens, deadline, cancel, emit, &log, request.sampling()));
      stage_done([&](int64_t us) { timings.set_execute_us(us); });
      v1::CompeteResult* result = response.mutable_compete();
      for (size_t i = 0; i < c.candidates.size(); ++i) {
        v1::CompeteCandidate* cand = result->add_candidates();
        cand->set_sub_task_id(c.sub_task_ids[i]);
        cand->set_device_id(c.candidates[i].chosen.device_id);
        cand->set_model(c.candidates[i].chosen.model.name());
        cand->set_output(c.candidates[i].output);
        cand->set_agreement(c.agreement[i]);
        cand->set_winner(static_cast<int>(i) == c.winner);
        const size_t first = records.size();
        AddRecords(&records, request_id, c.sub_task_ids[i], v1::CONTRIBUTION_ROLE_COMPETE,
                   c.candidates[i], clock_->Now(),
                   {plan.categories(0).category(), static_cast<int>(i) == c.winner});
        // The payout rule (compete_runner.h): a candidate that did not win is paid its share.
        if (static_cast<int>(i) != c.winner) {
          for (size_t r = first; r < records.size(); ++r) {
            records[r].set_credits_micro(ParticipantCredits(records[r].credits_micro(),
                                                            options_.compete.participant_share));
          }
        }
      }
      result->set_payout_rule(PayoutRule(options_.compete.participant_share));
      for (double score : c.scores) result->add_judge_scores(score);
      // The verdict is evidence of each model's skill at the category: a judge's counts fully,
      // agreement (the answer most like the others) half.
      if (options_.outcomes && c.candidates.size() >= 2) {
        const double weight = c.method == "judge" ? 1.0 : 0.5;
        std::vector<OutcomeDelta> verdict;
        for (size_t i = 0; i < c.candidates.size(); ++i) {
          const bool won = static_cast<int>(i) == c.winner;
          verdict.push_back({c.candidates[i].chosen.model.name(), plan.categories(0).category(),
                             won ? weight : 0, won ? 0 : weight / 2});
        }
        options_.outcomes->ObserveAll(verdict);
      }
      result->set_winner_sub_task_id(c.sub_task_ids[c.winner]);
      result->set_method(c.method);
      result->set_reason(c.reason);
      if (c.judge) {
        AddRecords(&records,
            request_id, "judge", v1::CONTRIBUTION_ROLE_JUDGE, *c.judge, clock_->Now());
      }
      response.set_output(c.candidates[c.winner].output);
      response.set_finish_reason(c.candidates[c.winner].finish_reason);
      break;
    }
    default: {
      // One passthrough per choice (n), in parallel; the first is the answer's fields.
      const int choices = std::max(1, request.n());
      std::vector<CallSpec> specs(choices);
      for (int i = 0; i < choices; ++i) {
        v1::SubTask* task = plan.add_sub_tasks();
        task->set_id(NewUuid());
        task->set_prompt(text);
        task->set_category(plan.categories(0).category());
        task->set_estimated_tokens(max_tokens);
        CallSpec& spec = specs[i];
        spec.sub_task_id = task->id();
        spec.pinned = {request.model(), request.family(), {}};
        for (const auto& need : NeededCapabilities(request.structure(), request.messages())) {
          spec.pinned.capabilities.push_back(need.first);
        }
        spec.structure = request.structure();
        spec.categories = {task->category()};
        spec.messages.assign(request.messages().begin(), request.messages().end());
        spec.max_tokens = request.max_tokens();  // 0: the device's own limit
        spec.credit_cap = max_tokens;
        spec.sampling = request.sampling();
        spec.answer = true;
      }
      emit_plan();
      std::vector<absl::StatusOr<CallResult>> calls(choices, absl::UnknownError("not run"));
      {
        absl::BlockingCounter others(choices - 1);
        for (int i = 1; i < choices; ++i) {
          choice_threads_.Run([&, i] {
            calls[i] = attempts_.Run(request_id, specs[i], deadline, cancel, emit, &log);
            others.DecrementCount();
          });
        }
        calls[0] = attempts_.Run(request_id, specs[0], deadline, cancel, emit, &log);
        others.Wait();
      }
      for (const auto& call : calls) {
        if (!call.ok()) return call.status();  // all or nothing: a failed request is not charged
      }
      stage_done([&](int64_t us) { timings.set_execute_us(us); });
      for (int i = 0; i < choices; ++i) {
        const CallResult& call = *calls[i];
        *response.add_results() = Result(plan.sub_tasks(i), text, call);
        AddRecords(&records, request_id, specs[i].sub_task_id, v1::CONTRIBUTION_ROLE_EXECUTE,
                   call, clock_->Now(), {plan.sub_tasks(i).category(), /*in_answer=*/true});
        if (choices > 1) {
          v1::Choice* c = response.add_choices();
          c->set_index(i);
          c->set_output(call.output);
          c->set_finish_reason(call.finish_reason);
          c->set_tool_calls_json(call.tool_calls_json);
          c->set_sub_task_id(specs[i].sub_task_id);
          c->set_device_id(call.chosen.device_id);
          c->set_model(call.chosen.model.name());
          c->set_logprobs_json(call.logprobs_json);
        }
      }
      response.set_output(calls[0]->output);
      response.set_finish_reason(calls[0]->finish_reason);
      response.set_tool_calls_json(calls[0]->tool_calls_json);
      response.set_logprobs_json(calls[0]->logprobs_json);
      break;
    }
  }

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
    kept.mutable_plan()->set_kind(plan.kind());
    *kept.mutable_plan()->mutable_categories() = plan.categories();
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

  *response.mutable_plan() = plan;
  for (const v1::Attempt& a : log.attempts()) *response.add_attempts() = a;
  for (const auto& r : records) *response.add_contributions() = r;
  response.set_cost_micro(settlement->charged_micro);
  response.set_settlement_id(settlement->settlement_id);
  if (log.policy()) *response.mutable_policy() = PolicyReportFor(*log.policy(), log);
  timings.set_device_wait_us(absl::ToInt64Microseconds(log.device_wait()));
  timings.set_total_us(absl::ToInt64Microseconds(clock_->Now() - arrived));
  const int64_t overhead = timings.total_us() - timings.device_wait_us() - timings.reserve_us() -
                           timings.settle_us();
  response.set_coordinator_overhead_us(std::max<int64_t>(0, overhead));
  *response.mutable_timings() = timings;
  spdlog::info("request {} {}: {} record(s), {} tokens, {} micro-credits, overhead {} us",
               request_id, v1::PlanKind_Name(plan.kind()), records.size(), total_tokens,
               settlement->charged_micro, response.coordinator_overhead_us());
  if (emit) {
    v1::CompleteEvent final_event;
    *final_event.mutable_final() = response;
    emit(final_event);
  }
  return response;
}

absl::Status RequestRunner::ClaimId(const std::string& request_id, absl::Time deadline,
                                    Cancellation* cancel) {
  // Bounded: each pass either claims the id or waits for the holder to finish, and every
  // wait ends by the deadline or the client's cancellation.
  while (true) {
    std::shared_ptr<Cancellation> running;
    {
      absl::MutexLock lock(&flights_mu_);
      auto [it, inserted] = flights_.try_emplace(request_id);
      if (inserted) {
        it->second = std::make_shared<Cancellation>();
        return absl::OkStatus();
      }
      running = it->second;
      ++duplicates_waiting_;
    }
    absl::Cleanup count = [this] {
      absl::MutexLock lock(&flights_mu_);
      --duplicates_waiting_;
    };
    Cancellation wake;
    const int on_done = running->OnCancel([&wake] { wake.Cancel(); });
    const int on_cancel = cancel ? cancel->OnCancel([&wake] { wake.Cancel(); }) : -1;
    wake.WaitFor(deadline - absl::Now());
    running->RemoveCallback(on_done);
    if (cancel) cancel->RemoveCallback(on_cancel);
    if (running->IsCancelled()) continue;  // finished: claim it, or find it settled
    if (cancel && cancel->IsCancelled()) {
      return absl::CancelledError("the client went away while the same request id was running");
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "a request with the same id was still running when this one's deadline passed"));
  }
}

int RequestRunner::DuplicatesWaiting() const {
  absl::MutexLock lock(&flights_mu_);
  return duplicates_waiting_;
}

void RequestRunner::UnclaimId(const std::string& request_id) {
  std::shared_ptr<Cancellation> done;
  {
    absl::MutexLock lock(&flights_mu_);
    auto it = flights_.find(request_id);
    done = std::move(it->second);
    flights_.erase(it);
  }
  done->Cancel();  // wakes the duplicates waiting for it
}

absl::StatusOr<v1::CompleteResponse> RequestRunner::Replay(const v1::CompleteRequest& request,
                                                           const std::string& request_id,
                                                           const absl::Status& settled,
                                                           const EventSink& sink) {
  absl::StatusOr<StoredAnswer> kept = ledger_->Answer(request_id);
  v1::CompleteResponse response;
  if (!kept.ok() || !response.ParseFromString(kept->answer)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "request ", request.request_id(), " was already served and charged, and no answer is "
        "kept for it: it was cancelled by its client before it finished (and charged for the "
        "part produced), or its answer is no longer kept; send a new id to ask again"));
  }
  response.set_request_id(request.request_id());
  response.set_cost_micro(kept->charged_micro);
  response.set_settlement_id(kept->settlement_id);
  response.set_replayed(true);
  spdlog::info("request {}: replayed the answer of settlement {}", request_id,
               kept->settlement_id);
  if (sink) {
    v1::CompleteEvent delta;
    delta.mutable_output()->set_text(response.output());
    delta.mutable_output()->set_answer(true);
    sink(delta);
    v1::CompleteEvent final_event;
    *final_event.mutable_final() = response;
    sink(final_event);
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
