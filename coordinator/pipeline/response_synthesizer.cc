#include "coordinator/pipeline/response_synthesizer.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "coordinator/pipeline/task_decomposer.h"

namespace loom {

std::string ResponseSynthesizer::Assemble(const std::vector<SubTaskOutcome>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StrAppend(&out, i ? "\n\n" : "", "## Part ", i + 1, " (", SubTaskLabel(parts[i].task),
                    ")\n", absl::StripLeadingAsciiWhitespace(parts[i].result.output));
  }
  return out;
}

std::string ResponseSynthesizer::Prompt(const std::string& request_text,
                                        const std::string& synthesis_prompt,
                                        const std::vector<SubTaskOutcome>& parts) {
  std::string prompt = absl::StrCat(synthesis_prompt, "\n\nOriginal request:\n", request_text,
                                    "\n\nParts:");
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StrAppend(&prompt, "\n\n[Part ", i + 1, ": ", SubTaskLabel(parts[i].task), "]\n",
                    parts[i].result.output);
  }
  return prompt;
}

absl::StatusOr<Synthesis> ResponseSynthesizer::Synthesize(
    const RequestScope& scope, const std::string& request_text,
    const std::string& synthesis_prompt, const std::vector<SubTaskOutcome>& parts,
    const std::vector<v1::ChatMessage>& context, const v1::Sampling& sampling) const {
  CallSpec spec;
  spec.sampling = sampling;  // its output is the answer
  spec.sub_task_id = "synthesis";
  spec.role = v1::CONTRIBUTION_ROLE_SYNTHESIZE;
  spec.categories = {v1::TASK_CATEGORY_GENERAL, v1::TASK_CATEGORY_REASONING};
  spec.messages = context;  // the answer continues the conversation
  v1::ChatMessage user;
  user.set_role("user");
  user.set_content(Prompt(request_text, synthesis_prompt, parts));
  spec.messages.push_back(user);
  int64_t budget = 0;
  for (const auto& p : parts) budget += p.result.tokens;
  spec.max_tokens = std::max<int64_t>(256, budget + 128);
  spec.answer = true;
  absl::StatusOr<CallResult> call = runner_->Run(scope.request_id, spec, scope.deadline, scope.cancel, scope.emit, scope.log);
  Synthesis s;
  if (call.ok()) {
    s.output = call->output;
    s.call = *std::move(call);
    return s;
  }
  if (call.status().code() == absl::StatusCode::kCancelled ||
      call.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return call.status();
  }
  s.output = Assemble(parts);
  s.note = absl::StrCat("assembled the parts without a synthesis model: ",
                        call.status().message());
  if (scope.emit) {
    v1::CompleteEvent e;
    e.mutable_output()->set_sub_task_id("synthesis");
    e.mutable_output()->set_text(s.output);
    e.mutable_output()->set_answer(true);
    scope.emit(e);
  }
  return s;
}

}  // namespace loom
