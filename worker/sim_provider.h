// File: worker/sim_provider.h
// A simulated device for demos, tests and benchmarks. Its text is deterministic (the same
// prompt gives the same answer), names the model and device, and is labelled "[simulated]".
// Timing and faults come from the SimBackend config: time to first token, tokens per second,
// output length, a fault after N tokens (fail, hang, or exit the whole process), and a lying
// usage report (usage_claim_factor) for tests of the coordinator's token accounting.
// Of the sampling settings it honours `stop` (the answer ends before the first stop sequence,
// finish_reason "stop") and max_tokens (finish_reason "length" when it cuts the answer short);
// temperature, top_p, seed and penalties change nothing, since its text is deterministic.
// Structure (tools and response_format), deterministically, so tests prove the round trip:
//   - tools: it calls a tool when tool_choice is "required" or names one, or (with "auto")
//     when the last user message mentions a tool by name ("get_weather" or "get weather");
//     the arguments are an example of the tool's parameters schema; finish_reason
//     "tool_calls". After a "tool" message it answers from the tool's result.
//   - response_format: json_schema gives an example instance of the schema (required
//     properties, enums' first values, $ref to $defs/definitions followed), json_object gives
//     {"answer": text}; both are valid JSON, whatever max_tokens says.
//
// Thread-safe (no mutable state).
#ifndef LOOM_WORKER_SIM_PROVIDER_H_
#define LOOM_WORKER_SIM_PROVIDER_H_

#include <functional>
#include <string>

#include "common/clock.h"
#include "loom/v1/config.pb.h"
#include "worker/inference_provider.h"

namespace loom {

struct SimProviderOptions {
  std::string model;      // named in the output
  std::string device_id;  // named in the output
  v1::SimBackend backend;
  // What KIND_EXIT does; tests replace it. Default: std::_Exit(75) (no destructors, no flush,
  // like a crash).
  std::function<void()> exit_process;
  // Paces the simulated generation and checks deadlines; nullptr: Clock::Real().
  Clock* clock = nullptr;
};

class SimProvider : public InferenceProvider {
 public:
  static constexpr int64_t kDefaultOutputTokens = 64;

  explicit SimProvider(SimProviderOptions options);

  absl::StatusOr<v1::InferChunk> Generate(const GenerateRequest& request, const TokenSink& sink,
                                     const Cancellation& cancel) override;
  bool simulated() const override { return true; }
  // Deterministic embeddings: each word (lowercased letters and digits) hashed to a signed
  // coordinate, the sum normalised to length 1, so texts sharing words are near each other.
  // `dimensions` 0 means 256. Honours the fail fault (UNAVAILABLE) and the time to first token.
  absl::StatusOr<v1::EmbedResponse> Embed(const std::vector<std::string>& input, int dimensions,
                                          absl::Time deadline, const Cancellation& cancel) override;

  // The pieces of the answer to `request`, each starting with a space so token counts add up,
  // and why it ends ("length" when max_tokens cut it, else "stop").
  std::vector<std::string> AnswerPieces(const GenerateRequest& request,
                                        std::string* finish_reason) const;

  // The tool calls (OpenAI's message.tool_calls JSON array) the request gets, or "" for text.
  std::string ToolCalls(const GenerateRequest& request) const;

 private:
  // The configured fault, once `emitted` tokens are out (OK when none is configured).
  absl::Status InjectFault(int64_t emitted, absl::Time deadline, const Cancellation& cancel) const;

  SimProviderOptions options_;
  Clock* const clock_;
};

}  // namespace loom

#endif  // LOOM_WORKER_SIM_PROVIDER_H_
