#include "coordinator/request_runner.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/tokens.h"
#include "ledger/pricing.h"

namespace loom {
namespace {

std::string LastUserMessage(const v1::CompleteRequest& request) {
  for (int i = request.messages_size() - 1; i >= 0; --i) {
    if (request.messages(i).role() == "user") return request.messages(i).content();
  }
  return request.messages().empty() ? "" : request.messages().rbegin()->content();
}

v1::CompleteEvent SubTaskEvent(v1::SubTaskEvent::Kind kind, const std::string& sub_task_id,
                               int attempt, const Selection& s, const std::string& reason) {
  v1::CompleteEvent event;
  v1::SubTaskEvent* e = event.mutable_sub_task();
  e->set_kind(kind);
  e->set_sub_task_id(sub_task_id);
  e->set_attempt(attempt);
  e->set_device_id(s.device_id);
  e->set_model(s.model.name());
  e->set_reason(reason);
  return event;
}

}  // namespace

RequestRunner::RequestRunner(RunnerOptions options, DeviceRegistry* registry,
                             DeviceClient* devices, LedgerStore* ledger, Clock* clock)
    : options_(std::move(options)),
      registry_(registry),
      devices_(devices),
      ledger_(ledger),
      clock_(clock) {}

absl::Status RequestRunner::Validate(const v1::CompleteRequest& request) const {
  if (request.messages().empty()) return absl::InvalidArgumentError("request has no messages");
  if (request.messages_size() > options_.max_messages) {
    return absl::InvalidArgumentError(absl::StrCat("request has ", request.messages_size(),
                                                   " messages; the limit is ",
                                                   options_.max_messages));
  }
  size_t total = 0;
  for (int i = 0; i < request.messages_size(); ++i) {
    const auto& m = request.messages(i);
    if (m.role() != "system" && m.role() != "user" && m.role() != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat(
          "messages[", i, "].role must be system, user or assistant, not '", m.role(), "'"));
    }
    if (m.content().size() > options_.max_message_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "] is ", m.content().size(),
                                                     " bytes; the limit is ",
                                                     options_.max_message_bytes));
    }
    total += m.content().size();
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
  if (request.request_id().size() > 128) return absl::InvalidArgumentError("request_id too long");
  if (request.mode() == v1::PLAN_KIND_COMPILED || request.mode() == v1::PLAN_KIND_COMPETE) {
    return absl::UnimplementedError(absl::StrCat(
        "plan kind ", v1::PlanKind_Name(request.mode()),
        " is not available in this version; only passthrough requests are served"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::CompilationPlan> RequestRunner::Plan(const v1::CompleteRequest& request,
                                                        const std::string& request_id) {
  v1::CompilationPlan plan;
  plan.set_request_id(request_id);
  plan.set_kind(v1::PLAN_KIND_PASSTHROUGH);
  int64_t prompt_tokens = 0;
  for (const auto& m : request.messages()) prompt_tokens += CountTokens(m.content());
  const int64_t max_tokens =
      request.max_tokens() > 0 ? request.max_tokens() : options_.default_max_tokens;
  plan.set_estimated_tokens(prompt_tokens + max_tokens);
  plan.add_reasons(!request.model().empty()    ? absl::StrCat("client asked for model ", request.model())
                   : !request.family().empty() ? absl::StrCat("client asked for family ", request.family())
                                               : "one model answers the whole request");
  v1::SubTask* task = plan.add_sub_tasks();
  task->set_id(NewUuid());
  task->set_prompt(LastUserMessage(request));
  task->set_category(v1::TASK_CATEGORY_GENERAL);
  task->set_order_index(0);
  task->set_estimated_tokens(max_tokens);

  LOOM_ASSIGN_OR_RETURN(Selection s, selector_.SelectPassthrough(
                                         registry_->Snapshot(),
                                         {.model = request.model(), .family = request.family()},
                                         {}));
  v1::Assignment* a = plan.add_assignments();
  a->set_sub_task_id(task->id());
  a->set_device_id(s.device_id);
  a->set_model(s.model.name());
  a->set_score(1.0 - s.load);
  a->set_reason(s.reason);
  return plan;
}

absl::StatusOr<v1::CompilationPlan> RequestRunner::Explain(const v1::CompleteRequest& request) {
  LOOM_RETURN_IF_ERROR(Validate(request));
  return Plan(request, request.request_id().empty() ? NewUuid() : request.request_id());
}

absl::StatusOr<v1::CompleteResponse> RequestRunner::Run(const v1::CompleteRequest& request,
                                                        absl::Time deadline,
                                                        const EventSink& sink,
                                                        Cancellation* cancel) {
  LOOM_RETURN_IF_ERROR(Validate(request));
  const std::string request_id = request.request_id().empty() ? NewUuid() : request.request_id();
  deadline = std::min(deadline, absl::Now() + options_.request_timeout);
  auto emit = [&](const v1::CompleteEvent& e) {
    if (sink) sink(e);
  };

  LOOM_ASSIGN_OR_RETURN(v1::CompilationPlan plan, Plan(request, request_id));
  {
    v1::CompleteEvent e;
    *e.mutable_plan() = plan;
    emit(e);
  }
  const v1::SubTask& task = plan.sub_tasks(0);
  const PassthroughTarget target{.model = request.model(), .family = request.family()};

  v1::CompleteResponse response;
  response.set_request_id(request_id);
  std::set<std::string> excluded;
  std::vector<std::string> failures;
  std::string output;
  absl::StatusOr<v1::Usage> usage = absl::UnavailableError("no attempt ran");
  Selection chosen;
  int attempt = 0;
  while (attempt < options_.max_attempts) {
    absl::StatusOr<Selection> selection =
        selector_.SelectPassthrough(registry_->Snapshot(), target, excluded);
    if (!selection.ok()) {
      if (failures.empty()) return selection.status();
      failures.push_back(std::string(selection.status().message()));
      break;
    }
    chosen = *std::move(selection);
    ++attempt;
    emit(SubTaskEvent(v1::SubTaskEvent::KIND_STARTED, task.id(), attempt, chosen, chosen.reason));

    DeviceCall call;
    call.address = chosen.address;
    call.deadline = std::min(deadline, absl::Now() + options_.attempt_timeout);
    call.request.set_request_id(request_id);
    call.request.set_sub_task_id(task.id());
    call.request.set_attempt(attempt);
    call.request.set_model(chosen.model.name());
    *call.request.mutable_messages() = request.messages();
    call.request.set_max_tokens(task.estimated_tokens());

    output.clear();
    const absl::Time started = clock_->Now();
    registry_->AddInflight(chosen.device_id, +1);
    usage = devices_->Infer(
        call,
        [&](std::string_view text) {
          output.append(text);
          v1::CompleteEvent e;
          e.mutable_output()->set_sub_task_id(task.id());
          e.mutable_output()->set_attempt(attempt);
          e.mutable_output()->set_text(std::string(text));
          emit(e);
        },
        cancel);
    registry_->AddInflight(chosen.device_id, -1);

    v1::Attempt* record = response.add_attempts();
    record->set_sub_task_id(task.id());
    record->set_attempt(attempt);
    record->set_device_id(chosen.device_id);
    record->set_model(chosen.model.name());
    record->set_latency_ms(absl::ToInt64Milliseconds(clock_->Now() - started));
    record->set_tokens(CountTokens(output));
    if (usage.ok()) {
      record->set_outcome(v1::ATTEMPT_OUTCOME_OK);
      break;
    }
    record->set_outcome(v1::ATTEMPT_OUTCOME_FAILED);
    record->set_reason(usage.status().ToString());
    failures.push_back(absl::StrCat(chosen.device_id, ": ", usage.status().ToString()));
    spdlog::warn("request {} attempt {} on {} failed: {}", request_id, attempt, chosen.device_id,
                 usage.status().ToString());
    if (cancel && cancel->IsCancelled()) return absl::CancelledError("the client cancelled");
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "request ", request_id, " ran out of time after ", attempt, " attempt(s): ",
          absl::StrJoin(failures, "; ")));
    }
    if (!IsRetryableOnAnotherDevice(usage.status())) return usage.status();
    excluded.insert(chosen.device_id);
    emit(SubTaskEvent(v1::SubTaskEvent::KIND_RETRIED, task.id(), attempt, chosen,
                      usage.status().ToString()));
  }
  if (!usage.ok()) {
    emit(SubTaskEvent(v1::SubTaskEvent::KIND_FAILED, task.id(), attempt, chosen, ""));
    return absl::UnavailableError(absl::StrCat("sub-task ", task.id(), " failed after ", attempt,
                                               " attempt(s): ", absl::StrJoin(failures, "; ")));
  }
  emit(SubTaskEvent(v1::SubTaskEvent::KIND_FINISHED, task.id(), attempt, chosen, ""));

  // The coordinator pays for the tokens it received, never more than the worker claims.
  const int64_t counted = CountTokens(output);
  const int64_t tokens = usage->completion_tokens() > 0
                             ? std::min(counted, usage->completion_tokens())
                             : counted;
  v1::ContributionRecord record;
  record.set_request_id(request_id);
  record.set_device_id(chosen.device_id);
  record.set_provider_id(chosen.provider_id);
  record.set_model(chosen.model.name());
  record.set_sub_task_id(task.id());
  record.set_role(v1::CONTRIBUTION_ROLE_EXECUTE);
  record.set_token_count(tokens);
  record.set_weight(1.0);
  record.set_credits_micro(CreditsForTokens(tokens, PricePer1kMicro(chosen.model)));
  record.set_attempt(attempt);
  record.set_created_unix_ms(absl::ToUnixMillis(clock_->Now()));

  const std::string client =
      request.client_id().empty() ? options_.default_client : request.client_id();
  absl::StatusOr<Settlement> settlement =
      ledger_->Settle({.request_id = request_id, .client_account = ClientAccount(client),
                       .records = {record}});
  if (!settlement.ok()) {
    spdlog::error("request {}: settlement failed, nothing charged or paid: {}", request_id,
                  settlement.status().ToString());
    return absl::Status(settlement.status().code(),
                        absl::StrCat("request ", request_id,
                                     " ran but could not be settled, so its answer is withheld "
                                     "and nothing was charged: ",
                                     settlement.status().message()));
  }

  response.set_output(output);
  *response.mutable_plan() = plan;
  v1::SubTaskResult* result = response.add_results();
  result->set_sub_task_id(task.id());
  result->set_output(output);
  result->set_device_id(chosen.device_id);
  result->set_model(chosen.model.name());
  *response.add_contributions() = record;
  response.mutable_usage()->set_prompt_tokens(usage->prompt_tokens());
  response.mutable_usage()->set_completion_tokens(tokens);
  response.set_cost_micro(settlement->charged_micro);
  response.set_settlement_id(settlement->settlement_id);
  spdlog::info("request {} served by {} ({}) in {} attempt(s), {} tokens, {} micro-credits",
               request_id, chosen.device_id, chosen.model.name(), attempt, tokens,
               settlement->charged_micro);
  v1::CompleteEvent final_event;
  *final_event.mutable_final() = response;
  emit(final_event);
  return response;
}

}  // namespace loom
