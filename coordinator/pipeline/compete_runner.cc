#include "coordinator/pipeline/compete_runner.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/categories.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

std::set<std::string> Words(const std::string& text) {
  std::set<std::string> words;
  std::string current;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      current += absl::ascii_tolower(c);
    } else if (!current.empty()) {
      words.insert(current);
      current.clear();
    }
  }
  if (!current.empty()) words.insert(current);
  return words;
}

// The verdict as a JSON Schema response_format, for a judge that advertises json_schema.
std::string VerdictSchema(int n) {
  const nlohmann::json schema = {
      {"type", "json_schema"},
      {"json_schema",
       {{"name", "verdict"},
        {"strict", true},
        {"schema",
         {{"type", "object"},
          {"properties",
           {{"winner", {{"type", "integer"}, {"minimum", 1}, {"maximum", n}}},
            {"scores", {{"type", "array"}, {"minItems", n}, {"maxItems", n},
                        {"items", {{"type", "number"}, {"minimum", 0}, {"maximum", 10}}}}},
            {"reason", {{"type", "string"}}}}},
          {"required", {"winner", "scores", "reason"}},
          {"additionalProperties", false}}}}}};
  return DumpJson(schema);
}

}  // namespace

double CompeteRunner::Similarity(const std::string& a, const std::string& b) {
  std::set<std::string> wa = Words(a), wb = Words(b);
  if (wa.empty() && wb.empty()) return 1;
  size_t common = 0;
  for (const auto& w : wa) common += wb.count(w);
  return static_cast<double>(common) / (wa.size() + wb.size() - common);
}

absl::StatusOr<JudgeVerdict> CompeteRunner::ParseJudgeVerdict(const std::string& reply, int n) {
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("malformed verdict: ", why));
  };
  if (reply.size() > 16 * 1024) return bad("longer than 16 KiB");
  // The object, with any fence or words a model put around it.
  const size_t open = reply.find('{'), close = reply.rfind('}');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return bad("no JSON object");
  }
  const nlohmann::json j =
      nlohmann::json::parse(reply.substr(open, close - open + 1), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not valid JSON");
  JudgeVerdict v;
  if (!j.contains("winner") || !j["winner"].is_number_integer() || j["winner"].get<int64_t>() < 1 ||
      j["winner"].get<int64_t>() > n) {
    return bad(absl::StrCat("'winner' must be an answer number from 1 to ", n));
  }
  v.winner = static_cast<int>(j["winner"].get<int64_t>());
  if (j.contains("scores") && !j["scores"].is_null()) {
    const nlohmann::json& scores = j["scores"];
    if (!scores.is_array() || static_cast<int>(scores.size()) != n) {
      return bad(absl::StrCat("'scores' must list ", n, " numbers, one per answer"));
    }
    for (const nlohmann::json& s : scores) {
      if (!s.is_number() || s.get<double>() < 0 || s.get<double>() > 10) {
        return bad("'scores' must be numbers from 0 to 10");
      }
      v.scores.push_back(s.get<double>());
    }
    for (double s : v.scores) {
      if (s > v.scores[v.winner - 1]) return bad("'winner' does not have the best score");
    }
  }
  if (j.contains("reason") && !j["reason"].is_null()) {
    if (!j["reason"].is_string()) return bad("'reason' must be a string");
    v.reason = ToValidUtf8(j["reason"].get<std::string>().substr(0, 500));
  }
  return v;
}

// Every candidate answers the whole request, in parallel; the ones that answered, in order.
absl::StatusOr<CompeteOutcome> CompeteRunner::RunCandidates(
    const RequestScope& scope, const std::vector<Selection>& picks,
    const std::vector<v1::ChatMessage>& messages, int64_t max_tokens, int64_t credit_cap,
    const v1::Sampling& sampling) const {
  std::vector<absl::StatusOr<CallResult>> results(picks.size(), absl::UnknownError("not run"));
  auto candidate = [&](size_t i) {
    CallSpec spec;
    spec.sub_task_id = absl::StrCat("compete-", i + 1);
    spec.role = v1::CONTRIBUTION_ROLE_COMPETE;
    spec.pinned.model = picks[i].model.name();
    spec.messages = messages;
    spec.max_tokens = max_tokens;
    spec.credit_cap = credit_cap;
    spec.sampling = sampling;  // each candidate answers as the client asked
    spec.stream = false;
    results[i] = runner_->Run(scope.request_id, spec, scope.deadline, scope.cancel, scope.emit,
                              scope.log);
  };
  // All but the last candidate on other threads; the last on this one.
  absl::BlockingCounter others(static_cast<int>(picks.size()) - 1);
  for (size_t i = 0; i + 1 < picks.size(); ++i) {
    threads_.Run([&, i] {
      candidate(i);
      others.DecrementCount();
    });
  }
  candidate(picks.size() - 1);
  others.Wait();  // the counter may be destroyed once Wait returns

  CompeteOutcome out;
  absl::Status first_error;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      out.sub_task_ids.push_back(absl::StrCat("compete-", i + 1));
      out.candidates.push_back(*std::move(results[i]));
    } else if (first_error.ok()) {
      first_error = results[i].status();
    }
  }
  if (scope.cancel && scope.cancel->IsCancelled()) {
    return absl::CancelledError("the request was cancelled");
  }
  if (out.candidates.empty()) {
    return absl::Status(first_error.code(),
                        absl::StrCat("every compete candidate failed: ", first_error.message()));
  }
  return out;
}

// Asks the judge model which candidate is best; on a usable verdict sets the winner. Returns
// why there was none ("" when the judge decided), for the agreement fallback's reason.
std::string CompeteRunner::Judge(const RequestScope& scope,
                                 const std::vector<v1::ChatMessage>& messages,
                                 CompeteOutcome* out_ptr) const {
  CompeteOutcome& out = *out_ptr;
  const int n = static_cast<int>(out.candidates.size());
  CallSpec spec;
  spec.sub_task_id = "judge";
  spec.role = v1::CONTRIBUTION_ROLE_JUDGE;
  spec.pinned.model = options_.judge_model;
  spec.max_tokens = 256;
  spec.stream = false;
  // A judge that can follow a JSON schema is held to the verdict's.
  bool schema = false;
  runner_->registry()->Read([&](absl::Span<const ModelGroup* const> groups, int) {
    for (const ModelGroup* g : groups) {
      const auto& caps = g->model().capabilities();
      schema |= g->model().name() == options_.judge_model &&
                std::find(caps.begin(), caps.end(), kCapabilityJsonSchema) != caps.end();
    }
  });
  if (schema) {
    // Only a device whose advertisement honours the schema is given it.
    spec.structure.set_response_format_json(VerdictSchema(n));
    spec.pinned.capabilities.push_back(kCapabilityJsonSchema);
  }
  std::string prompt = absl::StrCat(
      "Which answer serves the request best? Reply with JSON only: {\"winner\": N, "
      "\"scores\": [one score from 0 to 10 per answer, in order], \"reason\": \"one "
      "sentence\"}, where N is the number of the best answer (1 to ", n, ").\n\n");
  for (const auto& m : messages) absl::StrAppend(&prompt, m.role(), ": ", m.content(), "\n");
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&prompt, "\nAnswer ", i + 1, ":\n", out.candidates[i].output, "\n");
  }
  v1::ChatMessage user;
  user.set_role("user");
  user.set_content(prompt);
  spec.messages.push_back(user);
  absl::StatusOr<CallResult> judge =
      runner_->Run(scope.request_id, spec, scope.deadline, scope.cancel, scope.emit, scope.log);
  if (!judge.ok()) {
    return absl::StrCat("judge ", options_.judge_model, " failed (", judge.status().message(),
                        "); ");
  }
  absl::StatusOr<JudgeVerdict> verdict = ParseJudgeVerdict(judge->output, n);
  if (!verdict.ok()) {
    return absl::StrCat("judge ", options_.judge_model, " gave no usable choice (",
                        verdict.status().message(), "); ");
  }
  out.winner = verdict->winner - 1;
  out.method = "judge";
  out.scores = verdict->scores;
  out.reason = absl::StrFormat("judge %s chose answer %d of %d%s", options_.judge_model,
                               verdict->winner, n,
                               verdict->reason.empty() ? "" : absl::StrCat(": ", verdict->reason));
  out.judge = *std::move(judge);
  return "";
}

absl::StatusOr<CompeteOutcome> CompeteRunner::Run(const RequestScope& scope,
                                                  const std::vector<v1::ChatMessage>& messages,
                                                  v1::TaskCategory category, int64_t max_tokens,
                                                  int64_t credit_cap,
                                                  const v1::Sampling& sampling) const {
  // Every candidate sees the whole request: the policy binds them all.
  const SelectionPolicy* policy = scope.log->policy() ? &scope.log->policy()->all : nullptr;
  LimitTally tally;
  std::vector<Selection> picks = runner_->selector().RankDistinctModels(
      *runner_->registry(), category, options_.k, policy, &tally);
  if (picks.empty()) {
    if (tally.total() > 0) {
      return PolicyUnmetError(*policy, tally, "compete", runner_->registry()->Size());
    }
    return absl::UnavailableError("no healthy device can compete");
  }

  LOOM_ASSIGN_OR_RETURN(CompeteOutcome out,
                        RunCandidates(scope, picks, messages, max_tokens, credit_cap, sampling));
  const int n = static_cast<int>(out.candidates.size());
  out.agreement.assign(n, 0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i != j) out.agreement[i] += Similarity(out.candidates[i].output, out.candidates[j].output);
    }
    if (n > 1) out.agreement[i] /= n - 1;
  }

  // A judge, when configured.
  std::string judge_problem;
  if (!options_.judge_model.empty() && n > 1) judge_problem = Judge(scope, messages, &out);
  if (out.method.empty()) {
    int best = 0;
    for (int i = 1; i < n; ++i) {
      if (out.agreement[i] > out.agreement[best]) best = i;
    }
    out.winner = best;
    out.method = "agreement";
    out.reason = n == 1 ? absl::StrCat(judge_problem, "only one candidate answered")
                        : absl::StrFormat("%sanswer %d agrees most with the others (mean "
                                          "similarity %.3f, %s)",
                                          judge_problem, best + 1, out.agreement[best],
                                          CategoryName(category));
  }
  if (scope.emit) {
    v1::CompleteEvent e;
    e.mutable_output()->set_sub_task_id(out.sub_task_ids[out.winner]);
    e.mutable_output()->set_text(out.candidates[out.winner].output);
    e.mutable_output()->set_answer(true);
    scope.emit(e);
  }
  return out;
}

}  // namespace loom
