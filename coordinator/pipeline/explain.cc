// The plan a request gets, as shown before it runs (Explain, `loom plan`) and as streamed when it
// does: the analysis, the rule decomposition, and each sub-task's tentative device.
#include <algorithm>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "coordinator/pipeline/contributions.h"
#include "coordinator/pipeline/request_runner.h"
#include "ledger/pricing.h"

namespace loom {

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

}  // namespace loom
