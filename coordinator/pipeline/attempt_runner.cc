#include "coordinator/pipeline/attempt_runner.h"

#include "coordinator/mesh/outcome_model.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/retry.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"
#include "common/tokens.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

// Streamed to the client when a failed attempt's text cannot be continued by the next device.
constexpr char kRestartNotice[] =
    "\n\n[Loom: the device writing this answer failed; the answer starts again on another "
    "device]\n\n";

v1::CompleteEvent TaskEvent(v1::SubTaskEvent::Kind kind, const std::string& sub_task_id,
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

void AttemptLog::Add(v1::Attempt attempt) {
  if (observer_) observer_(attempt);
  absl::MutexLock lock(&mu_);
  attempts_.push_back(std::move(attempt));
}

std::vector<v1::Attempt> AttemptLog::attempts() const {
  absl::MutexLock lock(&mu_);
  return attempts_;
}

void AttemptLog::CallStarted() {
  absl::MutexLock lock(&mu_);
  if (in_flight_++ == 0) busy_since_ = clock_->Now();
}

void AttemptLog::CallFinished() {
  absl::MutexLock lock(&mu_);
  if (--in_flight_ == 0) busy_ += clock_->Now() - busy_since_;
}

void AttemptLog::AddDelivered(Delivered delivered) {
  absl::MutexLock lock(&mu_);
  delivered_.push_back(std::move(delivered));
}

std::vector<AttemptLog::Delivered> AttemptLog::delivered() const {
  absl::MutexLock lock(&mu_);
  return delivered_;
}

void AttemptLog::ForEachDelivered(absl::FunctionRef<void(const Delivered&)> visit) const {
  absl::MutexLock lock(&mu_);
  for (const Delivered& d : delivered_) visit(d);
}

absl::Duration AttemptLog::device_wait() const {
  absl::MutexLock lock(&mu_);
  return in_flight_ > 0 ? busy_ + (clock_->Now() - busy_since_) : busy_;
}

AttemptRunner::AttemptRunner(AttemptOptions options, DeviceRegistry* registry,
                             const ModelSelector* selector, DeviceClient* devices, Clock* clock,
                             Metrics* metrics)
    : options_(options),
      registry_(registry),
      selector_(selector),
      devices_(devices),
      clock_(clock),
      metrics_(metrics) {}

namespace {

// The streamed parts of failed attempts, as delivered work (what an abandoned request is
// settled for).
void AddEarlier(const CallSpec& spec, const CallResult& result, bool partial, AttemptLog* log) {
  for (const CallResult::Part& part : result.earlier) {
    CallResult paid;
    paid.chosen = part.chosen;
    paid.attempt = part.attempt;
    paid.tokens = part.tokens;
    log->AddDelivered({spec.sub_task_id, spec.role, std::move(paid), partial});
  }
}

}  // namespace

void AttemptLog::ExcludeDevices(std::set<std::string> devices) {
  absl::MutexLock lock(&mu_);
  excluded_ = std::move(devices);
}

void AttemptLog::NotePolicy(const std::string& sub_task_id, std::string note) {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, text] : policy_notes_) {
    if (id == sub_task_id) return;
  }
  policy_notes_.emplace_back(sub_task_id, std::move(note));
}

std::vector<std::string> AttemptLog::policy_notes() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [id, text] : policy_notes_) out.push_back(absl::StrCat(id, ": ", text));
  return out;
}

std::set<std::string> AttemptLog::excluded_devices() const {
  absl::MutexLock lock(&mu_);
  return excluded_;
}

absl::StatusOr<CallResult> AttemptRunner::Run(const std::string& request_id,
                                              const CallSpec& spec, absl::Time deadline,
                                              Cancellation* cancel, const EventSink& sink,
                                              AttemptLog* log) const {
  const bool pinned = !spec.pinned.model.empty() || !spec.pinned.family.empty() ||
                      !spec.pinned.capabilities.empty();
  const int max_attempts = spec.max_attempts > 0 ? spec.max_attempts : options_.max_attempts;
  std::set<std::string> excluded = spec.excluded;
  for (const std::string& device : log->excluded_devices()) excluded.insert(device);
  std::vector<std::string> failures;
  CallResult result;
  absl::Status last = absl::UnavailableError("no attempt ran");
  int attempt = 0;
  int busy = 0;  // attempts refused with RESOURCE_EXHAUSTED
  // Text failed attempts streamed that the next attempt continues from.
  std::string prefix;
  int64_t paid_earlier = 0;  // tokens of result.earlier
  const int64_t cap = spec.max_tokens > 0 ? spec.max_tokens : spec.credit_cap;
  const RequestPolicy* request_policy = log->policy();
  const SelectionPolicy* policy =
      request_policy ? &request_policy->For(spec.private_data) : nullptr;
  if (request_policy && request_policy->all.HasLimits()) {
    std::vector<std::string> limits = policy->LimitTexts();
    std::string note = limits.empty() ? "no device limit" : absl::StrJoin(limits, ", ");
    if (request_policy->private_only) {
      absl::StrAppend(&note, spec.private_data ? " (sees the client's material)"
                                               : " (no private data: trust and region not applied)");
    }
    log->NotePolicy(spec.sub_task_id, std::move(note));
  }
  while (attempt < max_attempts) {
    absl::StatusOr<Selection> selection =
        pinned ? selector_->SelectPassthrough(*registry_, spec.pinned, excluded, policy)
               : selector_->SelectForCategories(*registry_, spec.categories, excluded, policy);
    if (!selection.ok()) {
      if (failures.empty()) return selection.status();
      failures.push_back(std::string(selection.status().message()));
      break;
    }
    result.chosen = *std::move(selection);
    ++attempt;
    const Selection& chosen = result.chosen;
    if (sink) {
      sink(TaskEvent(v1::SubTaskEvent::KIND_STARTED, spec.sub_task_id, attempt, chosen,
                     chosen.reason));
    }

    const auto& caps = chosen.model.capabilities();
    const bool continuing =
        !prefix.empty() &&
        std::find(caps.begin(), caps.end(), kCapabilityContinue) != caps.end();
    if (!prefix.empty() && !continuing) {
      // This model cannot continue another's text: the client hears that the answer restarts.
      if (spec.stream && sink) {
        v1::CompleteEvent e;
        e.mutable_output()->set_sub_task_id(spec.sub_task_id);
        e.mutable_output()->set_attempt(attempt);
        e.mutable_output()->set_text(kRestartNotice);
        e.mutable_output()->set_answer(spec.answer);
        sink(e);
      }
      prefix.clear();
    }

    DeviceCall call;
    call.device_id = chosen.device_id;
    call.provider_id = chosen.provider_id;
    call.address = chosen.address;
    absl::Time attempt_deadline = clock_->Now() + options_.attempt_timeout;
    if (chosen.tokens_per_second > 0) {
      attempt_deadline = std::min(
          attempt_deadline,
          clock_->Now() + options_.first_token_allowance +
              absl::Seconds(options_.slowness_factor *
                            (spec.max_tokens > 0 ? spec.max_tokens : spec.credit_cap) /
                            chosen.tokens_per_second));
    }
    call.deadline = std::min(deadline, attempt_deadline);
    call.request.set_request_id(request_id);
    call.request.set_sub_task_id(spec.sub_task_id);
    call.request.set_attempt(attempt);
    call.request.set_model(chosen.model.name());
    for (const auto& m : spec.messages) *call.request.add_messages() = m;
    if (continuing) {
      v1::ChatMessage* unfinished = call.request.add_messages();
      unfinished->set_role("assistant");
      unfinished->set_content(prefix);
    }
    // What the whole answer may have, less what earlier attempts are paid for.
    call.request.set_max_tokens(
        spec.max_tokens > 0 ? std::max<int64_t>(1, spec.max_tokens - paid_earlier) : 0);
    *call.request.mutable_sampling() = spec.sampling;
    *call.request.mutable_structure() = spec.structure;

    std::string output;
    // Device text reaches prompts, events (proto strings) and JSON: a character cut between
    // chunks waits for its tail, and ill-formed bytes become U+FFFD, whatever the device sent.
    std::string pending;
    auto take = [&](std::string piece) {
      if (piece.empty()) return;
      output.append(piece);
      if (!spec.stream || !sink) return;
      v1::CompleteEvent e;
      e.mutable_output()->set_sub_task_id(spec.sub_task_id);
      e.mutable_output()->set_attempt(attempt);
      e.mutable_output()->set_text(std::move(piece));
      e.mutable_output()->set_answer(spec.answer);
      sink(e);
    };
    const absl::Time started = clock_->Now();
    absl::Duration first_output = absl::ZeroDuration();
    registry_->AddInflight(chosen.device_id, +1);
    log->CallStarted();
    absl::StatusOr<v1::InferChunk> final_chunk = devices_->Infer(
        call,
        [&](std::string_view text) {
          if (first_output == absl::ZeroDuration() && !text.empty()) {
            first_output = std::max(clock_->Now() - started, absl::Microseconds(1));
          }
          pending.append(text.data(), text.size());
          size_t complete = CompleteUtf8Length(pending);
          if (pending.size() - complete > 3) complete = pending.size();  // never a character
          std::string piece = ToValidUtf8(absl::string_view(pending).substr(0, complete));
          pending.erase(0, complete);
          take(std::move(piece));
        },
        cancel);
    take(ToValidUtf8(pending));  // a tail that never completed
    absl::StatusOr<v1::Usage> usage =
        final_chunk.ok() ? absl::StatusOr<v1::Usage>(final_chunk->usage())
                         : absl::StatusOr<v1::Usage>(final_chunk.status());
    log->CallFinished();
    registry_->AddInflight(chosen.device_id, -1);
    const absl::Time finished = clock_->Now();
    const bool cancelled = cancel && cancel->IsCancelled();
    if (!cancelled) registry_->RecordAttempt(chosen.device_id, usage.ok(), first_output);
    // Output for an attempt that ran past its deadline is not used, and so not paid, even if
    // the worker finished it.
    if (usage.ok() && !cancelled && clock_->Now() > call.deadline) {
      usage = absl::DeadlineExceededError("the attempt finished after its deadline; not paid");
    }
    // Tool calls are output the model wrote (counted and paid like text); malformed ones are
    // a failed attempt, never passed on to the client.
    std::string tool_calls;
    if (usage.ok() && !final_chunk->tool_calls_json().empty()) {
      const nlohmann::json parsed =
          nlohmann::json::parse(final_chunk->tool_calls_json(), nullptr, /*allow_exceptions=*/false);
      if (parsed.is_array() && !parsed.empty()) {
        tool_calls = DumpJson(parsed);
      } else {
        usage = absl::UnavailableError("the device returned malformed tool calls");
      }
    }
    const int64_t counted = CountTokens(output) + CountTokens(tool_calls);
    // Credited tokens never exceed what the client's reservation was computed from (less what
    // earlier attempts of this call are paid).
    const int64_t left = cap > 0 ? std::max<int64_t>(0, cap - paid_earlier) : 0;

    v1::Attempt record;
    record.set_sub_task_id(spec.sub_task_id);
    record.set_attempt(attempt);
    record.set_device_id(chosen.device_id);
    record.set_model(chosen.model.name());
    record.set_latency_ms(absl::ToInt64Milliseconds(finished - started));
    record.set_tokens(counted);
    record.set_started_unix_ms(absl::ToUnixMillis(started));
    record.set_finished_unix_ms(absl::ToUnixMillis(finished));
    record.set_role(spec.role);
    if (cancelled) {
      // The request was cancelled (its client went away): the attempt stops here, and what
      // the device produced until then is delivered work, paid if the request is settled as
      // abandoned. A claim is believed only as far as the coordinator received text.
      record.set_outcome(v1::ATTEMPT_OUTCOME_CANCELLED);
      record.set_reason(usage.ok() ? "finished as the request was cancelled"
                                   : "stopped: the request was cancelled");
      log->Add(std::move(record));
      if (metrics_) metrics_->RecordAttempt(v1::ATTEMPT_OUTCOME_CANCELLED);
      int64_t tokens = usage.ok() && usage->completion_tokens() > 0
                           ? std::min(counted, usage->completion_tokens())
                           : counted;
      if (cap > 0) tokens = std::min(tokens, left);
      AddEarlier(spec, result, /*partial=*/true, log);
      if (tokens > 0) {
        CallResult partial = result;
        partial.earlier.clear();
        partial.output = std::move(output);
        partial.tokens = tokens;
        partial.attempt = attempt;
        partial.finish_reason = usage.ok() ? "stop" : "cancelled";
        log->AddDelivered({spec.sub_task_id, spec.role, std::move(partial), !usage.ok()});
      }
      return absl::CancelledError("the request was cancelled");
    }
    if (metrics_) {
      metrics_->RecordAttempt(usage.ok() ? v1::ATTEMPT_OUTCOME_OK : v1::ATTEMPT_OUTCOME_FAILED);
    }
    if (usage.ok()) {
      record.set_outcome(v1::ATTEMPT_OUTCOME_OK);
      log->Add(std::move(record));
      if (sink) sink(TaskEvent(v1::SubTaskEvent::KIND_FINISHED, spec.sub_task_id, attempt, chosen, ""));
      // Pay for the tokens received, never more than the worker claims.
      const int64_t claimed = usage->completion_tokens();
      if (claimed > counted + options_.overclaim_slack_tokens +
                        static_cast<int64_t>(static_cast<double>(counted) * options_.overclaim_tolerance)) {
        spdlog::warn("device {} claimed {} output tokens for request {} sub-task {} but sent {}; "
                     "paying for {}",
                     chosen.device_id, claimed, request_id, spec.sub_task_id, counted, counted);
        registry_->RecordOverclaim(chosen.device_id);
        if (metrics_) metrics_->RecordOverclaim();
      }
      result.tokens = usage->completion_tokens() > 0 ? std::min(counted, usage->completion_tokens())
                                                     : counted;
      if (cap > 0) result.tokens = std::min(result.tokens, left);
      result.prompt_tokens = usage->prompt_tokens();
      // Why it stopped: as the device said; from a worker that does not say, "length" when
      // the limit was reached.
      result.finish_reason =
          !final_chunk->finish_reason().empty() ? NormalizeFinishReason(final_chunk->finish_reason())
          : spec.max_tokens > 0 && counted >= spec.max_tokens ? "length"
                                                              : "stop";
      if (!tool_calls.empty()) result.finish_reason = "tool_calls";
      result.tool_calls_json = std::move(tool_calls);
      // Log probabilities cover one device's tokens: an answer continued from another
      // device's prefix has none for that part, so it reports none.
      if (!continuing && !final_chunk->logprobs_json().empty()) {
        const nlohmann::json parsed =
            nlohmann::json::parse(final_chunk->logprobs_json(), nullptr, /*allow_exceptions=*/false);
        if (parsed.is_array()) result.logprobs_json = DumpJson(parsed);
      }
      result.output = continuing ? absl::StrCat(prefix, output) : std::move(output);
      result.attempt = attempt;
      AddEarlier(spec, result, /*partial=*/false, log);
      CallResult last_part = result;
      last_part.earlier.clear();
      log->AddDelivered({spec.sub_task_id, spec.role, std::move(last_part), false});
      return result;
    }
    last = usage.status();
    if (last.code() == absl::StatusCode::kResourceExhausted) ++busy;
    // Text it streamed is kept: the next attempt continues from it, and this one is paid for
    // it (the client received it, or the answer keeps it).
    if (spec.stream && sink && !output.empty() && tool_calls.empty()) {
      const int64_t part = cap > 0 ? std::min(CountTokens(output), left) : CountTokens(output);
      if (part > 0) {
        result.earlier.push_back({chosen, attempt, part});
        paid_earlier += part;
      }
      prefix.append(output);
    }
    record.set_outcome(v1::ATTEMPT_OUTCOME_FAILED);
    record.set_reason(last.ToString());
    // A deadline missed on a model's own work counts weakly against it for the category (a
    // crash or a busy device says more about the device than the model).
    if (options_.outcomes && absl::IsDeadlineExceeded(last) && !spec.categories.empty() &&
        (spec.role == v1::CONTRIBUTION_ROLE_EXECUTE || spec.role == v1::CONTRIBUTION_ROLE_COMPETE) &&
        !(cancel && cancel->IsCancelled())) {
      options_.outcomes->Observe(chosen.model.name(), spec.categories.front(), /*good=*/false, 0.25);
    }
    log->Add(std::move(record));
    failures.push_back(absl::StrCat(chosen.device_id, ": ", last.ToString()));
    spdlog::warn("request {} sub-task {} attempt {} on {} failed: {}", request_id,
                 spec.sub_task_id, attempt, chosen.device_id, last.ToString());
    if (cancel && cancel->IsCancelled()) return absl::CancelledError("the request was cancelled");
    if (clock_->Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "sub-task ", spec.sub_task_id, " ran out of time after ", attempt, " attempt(s): ",
          absl::StrJoin(failures, "; ")));
    }
    if (!IsRetryableOnAnotherDevice(last)) return last;
    excluded.insert(chosen.device_id);
    if (sink) {
      sink(TaskEvent(v1::SubTaskEvent::KIND_RETRIED, spec.sub_task_id, attempt, chosen,
                     last.ToString()));
    }
  }
  if (sink) sink(TaskEvent(v1::SubTaskEvent::KIND_FAILED, spec.sub_task_id, attempt, result.chosen, ""));
  // Every device tried was busy: the client should come back later (429), not give up (503).
  if (busy == attempt && attempt > 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "every device able to serve this is busy (", attempt, " tried); retry shortly: ",
        absl::StrJoin(failures, "; ")));
  }
  return absl::UnavailableError(absl::StrCat("sub-task ", spec.sub_task_id, " failed after ",
                                             attempt, " attempt(s): ",
                                             absl::StrJoin(failures, "; ")));
}

}  // namespace loom
