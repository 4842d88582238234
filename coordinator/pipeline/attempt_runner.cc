#include "coordinator/pipeline/attempt_runner.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/retry.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"
#include "common/tokens.h"
#include "common/utf8.h"
#include "coordinator/mesh/outcome_model.h"
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

// One Run: the attempts of one call, device after device, and what carries from a failed
// attempt to the next (devices excluded, streamed text continued, tokens already paid).
class AttemptRunner::Call {
 public:
  Call(const AttemptRunner& runner, const std::string& request_id, const CallSpec& spec,
       absl::Time deadline, Cancellation* cancel, const EventSink& sink, AttemptLog* log)
      : runner_(runner),
        request_id_(request_id),
        spec_(spec),
        deadline_(deadline),
        cancel_(cancel),
        sink_(sink),
        log_(log),
        pinned_(!spec.pinned.model.empty() || !spec.pinned.family.empty() ||
                !spec.pinned.capabilities.empty()),
        max_attempts_(spec.max_attempts > 0 ? spec.max_attempts : runner.options_.max_attempts),
        cap_(spec.max_tokens > 0 ? spec.max_tokens : spec.credit_cap),
        request_policy_(log->policy()),
        policy_(request_policy_ ? &request_policy_->For(spec.private_data) : nullptr),
        excluded_(spec.excluded) {
    for (const std::string& device : log->excluded_devices()) excluded_.insert(device);
  }

  absl::StatusOr<CallResult> Run();

 private:
  // What one device call came back with.
  struct Outcome {
    absl::StatusOr<v1::InferChunk> final_chunk = absl::UnknownError("not run");
    absl::StatusOr<v1::Usage> usage = absl::UnknownError("not run");
    std::string output;      // the text received, valid UTF-8
    std::string tool_calls;  // a JSON array, when the model made tool calls
    int64_t counted = 0;     // tokens the coordinator counted in output and tool calls
    int64_t left = 0;        // what this attempt may still be paid (0: no cap)
    bool cancelled = false;
  };

  void NotePolicy() const;
  void Announce();  // the STARTED event; a restart notice when the text cannot be continued
  DeviceCall Build() const;
  Outcome Infer(const DeviceCall& call, v1::Attempt* record) const;
  absl::Status Cancelled(Outcome o, v1::Attempt record);
  CallResult Succeeded(Outcome o, v1::Attempt record);
  // The failed attempt is logged; the status to give up with, or nullopt to try another device.
  std::optional<absl::Status> Failed(const Outcome& o, v1::Attempt record);
  absl::Status GiveUp() const;
  void Emit(v1::CompleteEvent event) const {
    if (sink_) sink_(event);
  }
  void EmitText(std::string text) const;

  const AttemptRunner& runner_;
  const std::string& request_id_;
  const CallSpec& spec_;
  const absl::Time deadline_;
  Cancellation* const cancel_;
  const EventSink& sink_;
  AttemptLog* const log_;
  const bool pinned_;
  const int max_attempts_;
  const int64_t cap_;
  const RequestPolicy* const request_policy_;
  const SelectionPolicy* const policy_;

  std::set<std::string> excluded_;
  std::vector<std::string> failures_;
  CallResult result_;
  absl::Status last_ = absl::UnavailableError("no attempt ran");
  int attempt_ = 0;
  int busy_ = 0;             // attempts refused with RESOURCE_EXHAUSTED
  std::string prefix_;       // text failed attempts streamed that the next one continues from
  int64_t paid_earlier_ = 0;  // tokens of result_.earlier
  bool continuing_ = false;   // this attempt continues prefix_
};

absl::StatusOr<CallResult> AttemptRunner::Run(const std::string& request_id,
                                              const CallSpec& spec, absl::Time deadline,
                                              Cancellation* cancel, const EventSink& sink,
                                              AttemptLog* log) const {
  return Call(*this, request_id, spec, deadline, cancel, sink, log).Run();
}

absl::StatusOr<CallResult> AttemptRunner::Call::Run() {
  NotePolicy();
  while (attempt_ < max_attempts_) {
    const ModelSelector& selector = *runner_.selector_;
    absl::StatusOr<Selection> selection =
        pinned_ ? selector.SelectPassthrough(*runner_.registry_, spec_.pinned, excluded_, policy_)
                : selector.SelectForCategories(*runner_.registry_, spec_.categories, excluded_,
                                               policy_);
    if (!selection.ok()) {
      if (failures_.empty()) return selection.status();
      failures_.push_back(std::string(selection.status().message()));
      break;
    }
    result_.chosen = *std::move(selection);
    ++attempt_;
    Announce();
    const DeviceCall call = Build();
    v1::Attempt record;
    Outcome outcome = Infer(call, &record);
    if (outcome.cancelled) return Cancelled(std::move(outcome), std::move(record));
    if (runner_.metrics_) {
      runner_.metrics_->RecordAttempt(outcome.usage.ok() ? v1::ATTEMPT_OUTCOME_OK
                                                         : v1::ATTEMPT_OUTCOME_FAILED);
    }
    if (outcome.usage.ok()) return Succeeded(std::move(outcome), std::move(record));
    if (std::optional<absl::Status> stop = Failed(outcome, std::move(record))) return *stop;
  }
  return GiveUp();
}

void AttemptRunner::Call::NotePolicy() const {
  if (!request_policy_ || !request_policy_->all.HasLimits()) return;
  std::vector<std::string> limits = policy_->LimitTexts();
  std::string note = limits.empty() ? "no device limit" : absl::StrJoin(limits, ", ");
  if (request_policy_->private_only) {
    absl::StrAppend(&note, spec_.private_data ? " (sees the client's material)"
                                              : " (no private data: trust and region not applied)");
  }
  log_->NotePolicy(spec_.sub_task_id, std::move(note));
}

void AttemptRunner::Call::EmitText(std::string text) const {
  if (!spec_.stream || !sink_) return;
  v1::CompleteEvent e;
  e.mutable_output()->set_sub_task_id(spec_.sub_task_id);
  e.mutable_output()->set_attempt(attempt_);
  e.mutable_output()->set_text(std::move(text));
  e.mutable_output()->set_answer(spec_.answer);
  sink_(e);
}

void AttemptRunner::Call::Announce() {
  const Selection& chosen = result_.chosen;
  Emit(TaskEvent(v1::SubTaskEvent::KIND_STARTED, spec_.sub_task_id, attempt_, chosen,
                 chosen.reason));
  const auto& caps = chosen.model.capabilities();
  continuing_ = !prefix_.empty() &&
                std::find(caps.begin(), caps.end(), kCapabilityContinue) != caps.end();
  if (!prefix_.empty() && !continuing_) {
    // This model cannot continue another's text: the client hears that the answer restarts.
    EmitText(kRestartNotice);
    prefix_.clear();
  }
}

DeviceCall AttemptRunner::Call::Build() const {
  const Selection& chosen = result_.chosen;
  const AttemptOptions& options = runner_.options_;
  Clock* clock = runner_.clock_;
  DeviceCall call;
  call.device_id = chosen.device_id;
  call.provider_id = chosen.provider_id;
  call.address = chosen.address;
  absl::Time attempt_deadline = clock->Now() + options.attempt_timeout;
  if (chosen.tokens_per_second > 0) {
    attempt_deadline = std::min(
        attempt_deadline,
        clock->Now() + options.first_token_allowance +
            absl::Seconds(options.slowness_factor * cap_ / chosen.tokens_per_second));
  }
  call.deadline = std::min(deadline_, attempt_deadline);
  call.request.set_request_id(request_id_);
  call.request.set_sub_task_id(spec_.sub_task_id);
  call.request.set_attempt(attempt_);
  call.request.set_model(chosen.model.name());
  for (const auto& m : spec_.messages) *call.request.add_messages() = m;
  if (continuing_) {
    v1::ChatMessage* unfinished = call.request.add_messages();
    unfinished->set_role("assistant");
    unfinished->set_content(prefix_);
  }
  // What the whole answer may have, less what earlier attempts are paid for.
  call.request.set_max_tokens(
      spec_.max_tokens > 0 ? std::max<int64_t>(1, spec_.max_tokens - paid_earlier_) : 0);
  *call.request.mutable_sampling() = spec_.sampling;
  *call.request.mutable_structure() = spec_.structure;
  call.request.set_final_text_ok(true);  // every DeviceClient passes a final chunk's text on
  call.request.set_batch_ok(!spec_.stream || !sink_);  // nobody sees the text as it comes
  return call;
}

AttemptRunner::Call::Outcome AttemptRunner::Call::Infer(const DeviceCall& call,
                                                        v1::Attempt* record) const {
  const Selection& chosen = result_.chosen;
  Clock* clock = runner_.clock_;
  DeviceRegistry* registry = runner_.registry_;
  Outcome o;
  // Device text reaches prompts, events (proto strings) and JSON: a character cut between
  // chunks waits for its tail, and ill-formed bytes become U+FFFD, whatever the device sent.
  std::string pending;
  auto take = [&](std::string piece) {
    if (piece.empty()) return;
    o.output.append(piece);
    EmitText(std::move(piece));
  };
  const absl::Time started = clock->Now();
  absl::Duration first_output = absl::ZeroDuration();
  registry->AddInflight(chosen.device_id, +1);
  log_->CallStarted();
  o.final_chunk = runner_.devices_->Infer(
      call,
      [&](std::string_view text) {
        if (first_output == absl::ZeroDuration() && !text.empty()) {
          first_output = std::max(clock->Now() - started, absl::Microseconds(1));
        }
        pending.append(text.data(), text.size());
        size_t complete = CompleteUtf8Length(pending);
        if (pending.size() - complete > 3) complete = pending.size();  // never a character
        std::string piece = ToValidUtf8(absl::string_view(pending).substr(0, complete));
        pending.erase(0, complete);
        take(std::move(piece));
      },
      cancel_);
  take(ToValidUtf8(pending));  // a tail that never completed
  o.usage = o.final_chunk.ok() ? absl::StatusOr<v1::Usage>(o.final_chunk->usage())
                               : absl::StatusOr<v1::Usage>(o.final_chunk.status());
  log_->CallFinished();
  registry->AddInflight(chosen.device_id, -1);
  const absl::Time finished = clock->Now();
  o.cancelled = cancel_ && cancel_->IsCancelled();
  if (!o.cancelled) registry->RecordAttempt(chosen.device_id, o.usage.ok(), first_output);
  // Output for an attempt that ran past its deadline is not used, and so not paid, even if
  // the worker finished it.
  if (o.usage.ok() && !o.cancelled && clock->Now() > call.deadline) {
    o.usage = absl::DeadlineExceededError("the attempt finished after its deadline; not paid");
  }
  // Tool calls are output the model wrote (counted and paid like text); malformed ones are
  // a failed attempt, never passed on to the client.
  if (o.usage.ok() && !o.final_chunk->tool_calls_json().empty()) {
    const nlohmann::json parsed =
        nlohmann::json::parse(o.final_chunk->tool_calls_json(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_array() && !parsed.empty()) {
      o.tool_calls = DumpJson(parsed);
    } else {
      o.usage = absl::UnavailableError("the device returned malformed tool calls");
    }
  }
  o.counted = CountTokens(o.output) + CountTokens(o.tool_calls);
  // Credited tokens never exceed what the client's reservation was computed from (less what
  // earlier attempts of this call are paid).
  o.left = cap_ > 0 ? std::max<int64_t>(0, cap_ - paid_earlier_) : 0;

  record->set_sub_task_id(spec_.sub_task_id);
  record->set_attempt(attempt_);
  record->set_device_id(chosen.device_id);
  record->set_model(chosen.model.name());
  record->set_latency_ms(absl::ToInt64Milliseconds(finished - started));
  record->set_tokens(o.counted);
  record->set_started_unix_ms(absl::ToUnixMillis(started));
  record->set_finished_unix_ms(absl::ToUnixMillis(finished));
  record->set_role(spec_.role);
  return o;
}

// The request was cancelled (its client went away): the attempt stops here, and what the
// device produced until then is delivered work, paid if the request is settled as abandoned.
// A claim is believed only as far as the coordinator received text.
absl::Status AttemptRunner::Call::Cancelled(Outcome o, v1::Attempt record) {
  record.set_outcome(v1::ATTEMPT_OUTCOME_CANCELLED);
  record.set_reason(o.usage.ok() ? "finished as the request was cancelled"
                                 : "stopped: the request was cancelled");
  log_->Add(std::move(record));
  if (runner_.metrics_) runner_.metrics_->RecordAttempt(v1::ATTEMPT_OUTCOME_CANCELLED);
  int64_t tokens = o.usage.ok() && o.usage->completion_tokens() > 0
                       ? std::min(o.counted, o.usage->completion_tokens())
                       : o.counted;
  if (cap_ > 0) tokens = std::min(tokens, o.left);
  AddEarlier(spec_, result_, /*partial=*/true, log_);
  if (tokens > 0) {
    CallResult partial = result_;
    partial.earlier.clear();
    partial.output = std::move(o.output);
    partial.tokens = tokens;
    partial.attempt = attempt_;
    partial.finish_reason = o.usage.ok() ? "stop" : "cancelled";
    log_->AddDelivered({spec_.sub_task_id, spec_.role, std::move(partial), !o.usage.ok()});
  }
  return absl::CancelledError("the request was cancelled");
}

CallResult AttemptRunner::Call::Succeeded(Outcome o, v1::Attempt record) {
  const Selection& chosen = result_.chosen;
  const AttemptOptions& options = runner_.options_;
  record.set_outcome(v1::ATTEMPT_OUTCOME_OK);
  log_->Add(std::move(record));
  Emit(TaskEvent(v1::SubTaskEvent::KIND_FINISHED, spec_.sub_task_id, attempt_, chosen, ""));
  // Pay for the tokens received, never more than the worker claims.
  const int64_t claimed = o.usage->completion_tokens();
  if (claimed > o.counted + options.overclaim_slack_tokens +
                    static_cast<int64_t>(static_cast<double>(o.counted) *
                                         options.overclaim_tolerance)) {
    spdlog::warn("device {} claimed {} output tokens for request {} sub-task {} but sent {}; "
                 "paying for {}",
                 chosen.device_id, claimed, request_id_, spec_.sub_task_id, o.counted, o.counted);
    runner_.registry_->RecordOverclaim(chosen.device_id);
    if (runner_.metrics_) runner_.metrics_->RecordOverclaim();
  }
  result_.tokens = claimed > 0 ? std::min(o.counted, claimed) : o.counted;
  if (cap_ > 0) result_.tokens = std::min(result_.tokens, o.left);
  result_.prompt_tokens = o.usage->prompt_tokens();
  // Why it stopped: as the device said; from a worker that does not say, "length" when the
  // limit was reached.
  const v1::InferChunk& final_chunk = *o.final_chunk;
  result_.finish_reason =
      !final_chunk.finish_reason().empty() ? NormalizeFinishReason(final_chunk.finish_reason())
      : spec_.max_tokens > 0 && o.counted >= spec_.max_tokens ? "length"
                                                              : "stop";
  if (!o.tool_calls.empty()) result_.finish_reason = "tool_calls";
  result_.tool_calls_json = std::move(o.tool_calls);
  // Log probabilities cover one device's tokens: an answer continued from another device's
  // prefix has none for that part, so it reports none.
  if (!continuing_ && !final_chunk.logprobs_json().empty()) {
    const nlohmann::json parsed =
        nlohmann::json::parse(final_chunk.logprobs_json(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_array()) result_.logprobs_json = DumpJson(parsed);
  }
  result_.output = continuing_ ? absl::StrCat(prefix_, o.output) : std::move(o.output);
  result_.attempt = attempt_;
  AddEarlier(spec_, result_, /*partial=*/false, log_);
  CallResult last_part = result_;
  last_part.earlier.clear();
  log_->AddDelivered({spec_.sub_task_id, spec_.role, std::move(last_part), false});
  return result_;
}

std::optional<absl::Status> AttemptRunner::Call::Failed(const Outcome& o, v1::Attempt record) {
  const Selection& chosen = result_.chosen;
  last_ = o.usage.status();
  if (last_.code() == absl::StatusCode::kResourceExhausted) ++busy_;
  // Text it streamed is kept: the next attempt continues from it, and this one is paid for it
  // (the client received it, or the answer keeps it).
  if (spec_.stream && sink_ && !o.output.empty() && o.tool_calls.empty()) {
    const int64_t part =
        cap_ > 0 ? std::min(CountTokens(o.output), o.left) : CountTokens(o.output);
    if (part > 0) {
      result_.earlier.push_back({chosen, attempt_, part});
      paid_earlier_ += part;
    }
    prefix_.append(o.output);
  }
  record.set_outcome(v1::ATTEMPT_OUTCOME_FAILED);
  record.set_reason(last_.ToString());
  // A deadline missed on a model's own work counts weakly against it for the category (a crash
  // or a busy device says more about the device than the model).
  const AttemptOptions& options = runner_.options_;
  if (options.outcomes && absl::IsDeadlineExceeded(last_) && !spec_.categories.empty() &&
      (spec_.role == v1::CONTRIBUTION_ROLE_EXECUTE ||
       spec_.role == v1::CONTRIBUTION_ROLE_COMPETE) &&
      !(cancel_ && cancel_->IsCancelled())) {
    options.outcomes->Observe(chosen.model.name(), spec_.categories.front(), /*good=*/false, 0.25);
  }
  log_->Add(std::move(record));
  failures_.push_back(absl::StrCat(chosen.device_id, ": ", last_.ToString()));
  spdlog::warn("request {} sub-task {} attempt {} on {} failed: {}", request_id_,
               spec_.sub_task_id, attempt_, chosen.device_id, last_.ToString());
  if (cancel_ && cancel_->IsCancelled()) return absl::CancelledError("the request was cancelled");
  if (runner_.clock_->Now() >= deadline_) {
    return absl::DeadlineExceededError(absl::StrCat(
        "sub-task ", spec_.sub_task_id, " ran out of time after ", attempt_, " attempt(s): ",
        absl::StrJoin(failures_, "; ")));
  }
  if (!IsRetryableOnAnotherDevice(last_)) return last_;
  excluded_.insert(chosen.device_id);
  Emit(TaskEvent(v1::SubTaskEvent::KIND_RETRIED, spec_.sub_task_id, attempt_, chosen,
                 last_.ToString()));
  return std::nullopt;
}

absl::Status AttemptRunner::Call::GiveUp() const {
  Emit(TaskEvent(v1::SubTaskEvent::KIND_FAILED, spec_.sub_task_id, attempt_, result_.chosen, ""));
  // Every device tried was busy: the client should come back later (429), not give up (503).
  if (busy_ == attempt_ && attempt_ > 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "every device able to serve this is busy (", attempt_, " tried); retry shortly: ",
        absl::StrJoin(failures_, "; ")));
  }
  return absl::UnavailableError(absl::StrCat("sub-task ", spec_.sub_task_id, " failed after ",
                                             attempt_, " attempt(s): ",
                                             absl::StrJoin(failures_, "; ")));
}

}  // namespace loom
