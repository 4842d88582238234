// The three plan kinds, one function each (request_runner.h): each runs its stages in the
// request's scope and fills the PlanRun's plan, response and contribution records;
// RequestRunner::SettleAndRespond then settles and answers for all of them.
#include <algorithm>

#include "absl/synchronization/blocking_counter.h"
#include "common/ids.h"
#include "common/openai_wire.h"
#include "common/status_macros.h"
#include "coordinator/pipeline/contributions.h"
#include "coordinator/pipeline/request_runner.h"

namespace loom {
namespace {

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

// COMPILED: decompose, run the sub-task graph, weave the parts together (one part is the
// answer by itself).
absl::Status RequestRunner::RunCompiled(PlanRun& run) const {
  const RequestScope& scope = run.scope;
  const std::string& request_id = scope.request_id;
  // Decomposition happens before there is a plan to show; its attempts are in the log, and
  // the stream starts with the plan, as StreamComplete promises.
  RequestScope quiet = scope;
  quiet.emit = nullptr;  // no events
  Decomposition d = decomposer_.Decompose(quiet, run.analysis, run.text);
  run.StageDone(&v1::Timings::set_decompose_us);
  for (const auto& t : d.sub_tasks) *run.plan.add_sub_tasks() = t;
  run.plan.set_synthesis_prompt(d.synthesis_prompt);
  run.plan.set_decomposer(d.method);
  if (!d.note.empty()) run.plan.add_reasons(d.note);
  EmitPlan(run);
  if (d.model_call) {
    AddRecords(&run.records, request_id, "decompose", v1::CONTRIBUTION_ROLE_DECOMPOSE,
               *d.model_call, clock_->Now());
  }
  LOOM_ASSIGN_OR_RETURN(std::vector<SubTaskOutcome> outcomes,
                        executor_.Run(scope, d.sub_tasks, run.context, run.request.sampling()));
  run.StageDone(&v1::Timings::set_execute_us);
  for (const auto& o : outcomes) {
    *run.response.add_results() = Result(o.task, o.input, o.result);
    AddRecords(&run.records, request_id, o.task.id(), v1::CONTRIBUTION_ROLE_EXECUTE, o.result,
               clock_->Now(), {o.task.category(), /*in_answer=*/true});
  }
  if (outcomes.size() == 1) {
    run.response.set_output(outcomes[0].result.output);
    run.response.set_finish_reason(outcomes[0].result.finish_reason);
    if (scope.emit) {
      v1::CompleteEvent e;
      e.mutable_output()->set_sub_task_id(outcomes[0].task.id());
      e.mutable_output()->set_text(outcomes[0].result.output);
      e.mutable_output()->set_answer(true);
      scope.emit(e);
    }
    return absl::OkStatus();
  }
  LOOM_ASSIGN_OR_RETURN(Synthesis s,
                        synthesizer_.Synthesize(scope, run.text, d.synthesis_prompt, outcomes,
                                                run.context, run.request.sampling()));
  run.StageDone(&v1::Timings::set_synthesize_us);
  run.response.set_output(s.output);
  run.response.set_synthesis_note(s.note);
  run.response.set_finish_reason(s.call ? s.call->finish_reason : "stop");
  if (s.call) {
    AddRecords(&run.records, request_id, "synthesis", v1::CONTRIBUTION_ROLE_SYNTHESIZE, *s.call,
               clock_->Now());
  }
  return absl::OkStatus();
}

// COMPETE: several models answer, one answer is chosen; candidates are paid by the payout
// rule, and the verdict teaches the outcome model.
absl::Status RequestRunner::RunCompete(PlanRun& run) const {
  const RequestScope& scope = run.scope;
  const std::string& request_id = scope.request_id;
  const v1::TaskCategory category = run.plan.categories(0).category();
  EmitPlan(run);
  const std::vector<v1::ChatMessage> messages(run.request.messages().begin(),
                                              run.request.messages().end());
  LOOM_ASSIGN_OR_RETURN(
      CompeteOutcome c,
      compete_.Run(scope, messages, category, run.request.max_tokens(), run.max_tokens,
                   run.request.sampling()));
  run.StageDone(&v1::Timings::set_execute_us);
  v1::CompeteResult* result = run.response.mutable_compete();
  for (size_t i = 0; i < c.candidates.size(); ++i) {
    const bool won = static_cast<int>(i) == c.winner;
    v1::CompeteCandidate* cand = result->add_candidates();
    cand->set_sub_task_id(c.sub_task_ids[i]);
    cand->set_device_id(c.candidates[i].chosen.device_id);
    cand->set_model(c.candidates[i].chosen.model.name());
    cand->set_output(c.candidates[i].output);
    cand->set_agreement(c.agreement[i]);
    cand->set_winner(won);
    const size_t first = run.records.size();
    AddRecords(&run.records, request_id, c.sub_task_ids[i], v1::CONTRIBUTION_ROLE_COMPETE,
               c.candidates[i], clock_->Now(), {category, won});
    // The payout rule (compete_runner.h): a candidate that did not win is paid its share.
    for (size_t r = first; !won && r < run.records.size(); ++r) {
      run.records[r].set_credits_micro(ParticipantCredits(run.records[r].credits_micro(),
                                                          options_.compete.participant_share));
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
      verdict.push_back({c.candidates[i].chosen.model.name(), category, won ? weight : 0,
                         won ? 0 : weight / 2});
    }
    options_.outcomes->ObserveAll(verdict);
  }
  result->set_winner_sub_task_id(c.sub_task_ids[c.winner]);
  result->set_method(c.method);
  result->set_reason(c.reason);
  if (c.judge) {
    AddRecords(&run.records, request_id, "judge", v1::CONTRIBUTION_ROLE_JUDGE, *c.judge,
               clock_->Now());
  }
  run.response.set_output(c.candidates[c.winner].output);
  run.response.set_finish_reason(c.candidates[c.winner].finish_reason);
  return absl::OkStatus();
}

// PASSTHROUGH: one model answers; with n > 1, one passthrough per choice, in parallel, all or
// nothing (a failed request is not charged), the first one's fields as the answer's.
absl::Status RequestRunner::RunPassthrough(PlanRun& run) const {
  const RequestScope& scope = run.scope;
  const v1::CompleteRequest& request = run.request;
  const int choices = std::max(1, request.n());
  std::vector<CallSpec> specs(choices);
  for (int i = 0; i < choices; ++i) {
    v1::SubTask* task = run.plan.add_sub_tasks();
    task->set_id(NewUuid());
    task->set_prompt(run.text);
    task->set_category(run.plan.categories(0).category());
    task->set_estimated_tokens(run.max_tokens);
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
    spec.credit_cap = run.max_tokens;
    spec.sampling = request.sampling();
    spec.answer = true;
  }
  EmitPlan(run);
  std::vector<absl::StatusOr<CallResult>> calls(choices, absl::UnknownError("not run"));
  {
    absl::BlockingCounter others(choices - 1);
    for (int i = 1; i < choices; ++i) {
      choice_threads_.Run([&, i] {
        calls[i] = attempts_.Run(scope.request_id, specs[i], scope.deadline, scope.cancel,
                                 scope.emit, scope.log);
        others.DecrementCount();
      });
    }
    calls[0] = attempts_.Run(scope.request_id, specs[0], scope.deadline, scope.cancel, scope.emit,
                             scope.log);
    others.Wait();
  }
  for (const auto& call : calls) {
    if (!call.ok()) return call.status();
  }
  run.StageDone(&v1::Timings::set_execute_us);
  for (int i = 0; i < choices; ++i) {
    const CallResult& call = *calls[i];
    *run.response.add_results() = Result(run.plan.sub_tasks(i), run.text, call);
    AddRecords(&run.records, scope.request_id, specs[i].sub_task_id, v1::CONTRIBUTION_ROLE_EXECUTE,
               call, clock_->Now(), {run.plan.sub_tasks(i).category(), /*in_answer=*/true});
    if (choices > 1) {
      v1::Choice* c = run.response.add_choices();
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
  run.response.set_output(calls[0]->output);
  run.response.set_finish_reason(calls[0]->finish_reason);
  run.response.set_tool_calls_json(calls[0]->tool_calls_json);
  run.response.set_logprobs_json(calls[0]->logprobs_json);
  return absl::OkStatus();
}

}  // namespace loom
