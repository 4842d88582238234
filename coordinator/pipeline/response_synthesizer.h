// File: coordinator/pipeline/response_synthesizer.h
// Weaves sub-task outputs into one answer: runs the synthesis prompt, the original request and
// the parts on a model chosen for general/reasoning affinity (through the AttemptRunner, so
// with retries), streaming its text as the answer. When no device can do it (none left, every
// attempt failed), it assembles the parts in order under headings and says so in `note`.
//
// Thread-safe (const after construction).
#ifndef LOOM_COORDINATOR_PIPELINE_RESPONSE_SYNTHESIZER_H_
#define LOOM_COORDINATOR_PIPELINE_RESPONSE_SYNTHESIZER_H_

#include <optional>
#include <string>
#include <vector>

#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/pipeline/request_scope.h"
#include "coordinator/pipeline/fan_out_executor.h"

namespace loom {

struct Synthesis {
  std::string output;
  std::optional<CallResult> call;  // the synthesis model call, when one answered
  std::string note;                // set when the parts were assembled without a model
};

class ResponseSynthesizer {
 public:
  explicit ResponseSynthesizer(const AttemptRunner* runner) : runner_(runner) {}

  // Fails only with CANCELLED / DEADLINE_EXCEEDED from the request; other failures fall back
  // to assembling the parts.
  absl::StatusOr<Synthesis> Synthesize(const RequestScope& scope, const std::string& request_text,
                                       const std::string& synthesis_prompt,
                                       const std::vector<SubTaskOutcome>& parts,
                                       const std::vector<v1::ChatMessage>& context,
      const v1::Sampling& sampling = v1::Sampling::default_instance()) const;

  // The parts in order under headings.
  static std::string Assemble(const std::vector<SubTaskOutcome>& parts);
  static std::string Prompt(const std::string& request_text, const std::string& synthesis_prompt,
                            const std::vector<SubTaskOutcome>& parts);

 private:
  const AttemptRunner* const runner_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_RESPONSE_SYNTHESIZER_H_
