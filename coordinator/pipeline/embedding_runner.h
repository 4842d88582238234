// File: coordinator/pipeline/embedding_runner.h
// Runs one /v1/embeddings request: the least loaded healthy device serving the embedding model,
// retried on the next one when a device fails; paid like any contribution (the device earns its
// price per 1,000 input tokens, the client pays that plus the fee), under the same budget
// rules as completions: reserved before anything runs, settled exactly once by request id,
// released when nothing was produced.
//
//   EmbeddingRunner runner({}, &registry, &devices, &ledger, Clock::Real());
//   auto r = runner.Run({.client_account = "client:alice", .request_id = id, .model = "nomic-embed-text",
//                        .input = {"a", "b"}, .deadline = deadline}, cancel);
//
// Tokens are the coordinator's own count of the input (common/tokens.h): it has every byte of
// it, so nothing a device claims changes what is paid. Retrying a settled id is refused
// (ALREADY_EXISTS; embeddings keep no answer to hand back).
//
// Thread-safe.
#ifndef LOOM_COORDINATOR_PIPELINE_EMBEDDING_RUNNER_H_
#define LOOM_COORDINATOR_PIPELINE_EMBEDDING_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cancellation.h"
#include "common/clock.h"
#include "coordinator/mesh/device_client.h"
#include "coordinator/mesh/registry.h"
#include "ledger/ledger_store.h"

namespace loom {

struct EmbeddingOptions {
  int max_attempts = 3;                                  // devices tried, at most
  absl::Duration reservation_margin = absl::Minutes(1);  // reservations outlive the deadline
};

struct EmbeddingRequest {
  std::string client_account;  // "client:NAME"
  std::string request_id;      // the ledger's id (scoped to the client when it named it)
  std::string model;
  std::vector<std::string> input;
  int dimensions = 0;
  absl::Time deadline = absl::InfiniteFuture();
};

struct EmbeddingResult {
  v1::EmbedResponse response;  // one embedding per input, in order
  int64_t tokens = 0;
  int64_t cost_micro = 0;      // charged, fee included
  std::string device_id;
  std::string provider_id;
  int attempts = 0;
};

class EmbeddingRunner {
 public:
  EmbeddingRunner(EmbeddingOptions options, DeviceRegistry* registry, DeviceClient* devices,
                  LedgerStore* ledger, Clock* clock);

  // NOT_FOUND when no device advertises the model; UNAVAILABLE when none of them can serve
  // now; FAILED_PRECONDITION (insufficient credits) before anything runs; the last device's
  // error when every attempt failed (nothing charged).
  absl::StatusOr<EmbeddingResult> Run(const EmbeddingRequest& request, Cancellation* cancel);

 private:
  const EmbeddingOptions options_;
  DeviceRegistry* const registry_;
  DeviceClient* const devices_;
  LedgerStore* const ledger_;
  Clock* const clock_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_EMBEDDING_RUNNER_H_
