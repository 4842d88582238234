// File: worker/inference_provider.h
// The worker's one seam: something that generates a completion for a conversation.
// Implementations: SimProvider (simulated device, sim_provider.h) and OpenAIProvider (any
// OpenAI-compatible server, openai_provider.h).
//
// Ownership: the Worker service owns one provider per advertised model.
// Thread safety: Generate may be called from several threads at once.
// Failure: UNAVAILABLE / INTERNAL for backend failures (the coordinator retries elsewhere),
// DEADLINE_EXCEEDED past `deadline`, CANCELLED when `cancel` fires or the sink refuses more
// text, INVALID_ARGUMENT for requests the backend cannot take (never retried).
#ifndef LOOM_WORKER_INFERENCE_PROVIDER_H_
#define LOOM_WORKER_INFERENCE_PROVIDER_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cancellation.h"
#include "loom/v1/common.pb.h"
#include "loom/v1/worker.pb.h"

namespace loom {

struct GenerateRequest {
  std::string request_id;
  std::vector<v1::ChatMessage> messages;
  int64_t max_tokens = 0;  // 0 = the backend's default
  v1::Sampling sampling;    // passed to the backend as it is
  v1::Structure structure;  // tools and response_format, passed to the backend as they are
  absl::Time deadline = absl::InfiniteFuture();
};

// Receives text as it is generated; returns false when the consumer is gone (stop generating).
using TokenSink = std::function<bool(std::string_view text)>;

class InferenceProvider {
 public:
  virtual ~InferenceProvider() = default;

  // Streams the completion through `sink` and returns the final chunk: usage, and why the
  // model stopped (finish_reason "stop" or "length", or what the backend said).
  virtual absl::StatusOr<v1::InferChunk> Generate(const GenerateRequest& request,
                                             const TokenSink& sink,
                                             const Cancellation& cancel) = 0;

  // True for simulated devices; shown wherever the device shows up.
  virtual bool simulated() const = 0;

  // Embeddings of `input` (one per string, in order) and the backend's count of input tokens.
  // UNIMPLEMENTED from a backend (or model) that makes none.
  virtual absl::StatusOr<v1::EmbedResponse> Embed(const std::vector<std::string>& input,
                                                  int dimensions, absl::Time deadline,
                                                  const Cancellation& cancel) {
    return absl::UnimplementedError("this backend makes no embeddings");
  }

  // Whether the backend can serve now (the worker keeps a device out of rotation while it
  // cannot, upstream_monitor.h); bounded by `timeout`. A simulated device always can.
  virtual absl::Status CheckUpstream(absl::Duration timeout) { return absl::OkStatus(); }
};

}  // namespace loom

#endif  // LOOM_WORKER_INFERENCE_PROVIDER_H_
