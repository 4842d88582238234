// File: worker/worker_config.h
// Turns a WorkerConfig (from --config or the quick flags) into validated settings and the
// providers that serve its models.
#ifndef LOOM_WORKER_WORKER_CONFIG_H_
#define LOOM_WORKER_WORKER_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loom/v1/config.pb.h"
#include "worker/worker_service.h"

namespace loom {

// Limits on what a device may advertise.
inline constexpr int kMaxModelsPerDevice = 64;
inline constexpr size_t kMaxNameLength = 128;
inline constexpr int kMaxConcurrency = 1024;
inline constexpr int64_t kMaxSimOutputTokens = 100'000;

// Fills defaults (max_concurrency 4, model family from the name) and checks every field.
// Errors are INVALID_ARGUMENT and start with "<origin>: <field>: ".
absl::StatusOr<v1::WorkerConfig> ValidateWorkerConfig(v1::WorkerConfig config,
                                                      const std::string& origin);

// Guesses a model family from its name: "qwen2.5-coder-7b" -> "qwen-coder", "llama-3.1-8b" ->
// "llama"; "" when nothing matches.
std::string GuessFamily(const std::string& model_name);

// Of the models a server lists (--discover), those the worker can serve for chat, and for
// each one it skips, why: embedding models (no chat; Loom has no /v1/embeddings yet) and
// models whose family cannot be told from the name (give it with --model and --family).
// Names of embedding models ("nomic-embed-text", "bge-m3", "all-minilm", "e5-large", ...).
bool IsEmbeddingModelName(const std::string& name);

struct DiscoveredModels {
  std::vector<std::string> served;
  std::vector<std::string> embeddings;  // served as embedding models (/v1/embeddings)
  std::vector<std::pair<std::string, std::string>> skipped;  // name, reason
};
DiscoveredModels SelectDiscoveredModels(const std::vector<std::string>& listed);

// One provider per model of a validated config.
absl::StatusOr<std::vector<ServedModel>> BuildServedModels(const v1::WorkerConfig& config);

}  // namespace loom

#endif  // LOOM_WORKER_WORKER_CONFIG_H_
