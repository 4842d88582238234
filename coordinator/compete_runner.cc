#include "coordinator/compete_runner.h"

#include <cctype>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "common/categories.h"

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

}  // namespace

double CompeteRunner::Similarity(const std::string& a, const std::string& b) {
  std::set<std::string> wa = Words(a), wb = Words(b);
  if (wa.empty() && wb.empty()) return 1;
  size_t common = 0;
  for (const auto& w : wa) common += wb.count(w);
  return static_cast<double>(common) / (wa.size() + wb.size() - common);
}

std::optional<int> CompeteRunner::ParseJudgeChoice(const std::string& reply, int n) {
  for (size_t i = 0; i < reply.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(reply[i]))) continue;
    size_t j = i;
    int value = 0;
    while (j < reply.size() && std::isdigit(static_cast<unsigned char>(reply[j])) && value < 1000) {
      value = value * 10 + (reply[j] - '0');
      ++j;
    }
    if (value >= 1 && value <= n) return value;
    return std::nullopt;  // the first number must be the choice
  }
  return std::nullopt;
}

absl::StatusOr<CompeteOutcome> CompeteRunner::Run(const std::string& request_id,
                                                  const std::vector<v1::ChatMessage>& messages,
                                                  v1::TaskCategory category, int64_t max_tokens,
                                                  int64_t credit_cap, absl::Time deadline, Cancellation* cancel,
                                                  const EventSink& sink, AttemptLog* log,
                                                  const v1::Sampling& sampling) const {
  std::vector<Selection> picks = runner_->selector().RankDistinctModels(
      *runner_->registry(), category, options_.k);
  if (picks.empty()) return absl::UnavailableError("no healthy device can compete");

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
    results[i] = runner_->Run(request_id, spec, deadline, cancel, sink, log);
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
  if (cancel && cancel->IsCancelled()) return absl::CancelledError("the request was cancelled");
  if (out.candidates.empty()) {
    return absl::Status(first_error.code(),
                        absl::StrCat("every compete candidate failed: ", first_error.message()));
  }
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
  if (!options_.judge_model.empty() && n > 1) {
    CallSpec spec;
    spec.sub_task_id = "judge";
    spec.role = v1::CONTRIBUTION_ROLE_JUDGE;
    spec.pinned.model = options_.judge_model;
    spec.max_tokens = 16;
    spec.stream = false;
    std::string prompt = "Which answer serves the request best? Reply with the number only.\n\n";
    for (const auto& m : messages) absl::StrAppend(&prompt, m.role(), ": ", m.content(), "\n");
    for (int i = 0; i < n; ++i) {
      absl::StrAppend(&prompt, "\nAnswer ", i + 1, ":\n", out.candidates[i].output, "\n");
    }
    v1::ChatMessage user;
    user.set_role("user");
    user.set_content(prompt);
    spec.messages.push_back(user);
    absl::StatusOr<CallResult> judge = runner_->Run(request_id, spec, deadline, cancel, sink, log);
    if (judge.ok()) {
      if (std::optional<int> choice = ParseJudgeChoice(judge->output, n)) {
        out.winner = *choice - 1;
        out.method = "judge";
        out.reason = absl::StrFormat("judge %s chose answer %d of %d", options_.judge_model,
                                     *choice, n);
        out.judge = *std::move(judge);
      } else {
        judge_problem = absl::StrCat("judge ", options_.judge_model, " gave no usable choice; ");
      }
    } else {
      judge_problem = absl::StrCat("judge ", options_.judge_model, " failed (",
                                   judge.status().message(), "); ");
    }
  }
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
  if (sink) {
    v1::CompleteEvent e;
    e.mutable_output()->set_sub_task_id(out.sub_task_ids[out.winner]);
    e.mutable_output()->set_text(out.candidates[out.winner].output);
    e.mutable_output()->set_answer(true);
    sink(e);
  }
  return out;
}

}  // namespace loom
