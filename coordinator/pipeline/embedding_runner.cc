// File: coordinator/pipeline/embedding_runner.cc
#include "coordinator/pipeline/embedding_runner.h"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/retry.h"
#include "common/status_macros.h"
#include "common/tokens.h"
#include "ledger/pricing.h"

namespace loom {

EmbeddingRunner::EmbeddingRunner(EmbeddingOptions options, DeviceRegistry* registry,
                                 DeviceClient* devices, LedgerStore* ledger, Clock* clock)
    : options_(options), registry_(registry), devices_(devices), ledger_(ledger), clock_(clock) {}

namespace {

// The one record of an embeddings request: the device that answered, paid for the input tokens.
v1::ContributionRecord Record(const EmbeddingRequest& request, const EmbedCall& call,
                              const v1::ModelInfo& model, int64_t tokens, int attempt,
                              absl::Time now) {
  v1::ContributionRecord record;
  record.set_request_id(request.request_id);
  record.set_device_id(call.device_id);
  record.set_provider_id(call.provider_id);
  record.set_model(request.model);
  record.set_sub_task_id("embeddings");
  record.set_role(v1::CONTRIBUTION_ROLE_EXECUTE);
  record.set_token_count(tokens);
  record.set_weight(1.0);
  record.set_credits_micro(CreditsForTokens(tokens, PricePer1kMicro(model)));
  record.set_attempt(attempt);
  record.set_created_unix_ms(absl::ToUnixMillis(now));
  return record;
}

}  // namespace

absl::StatusOr<EmbeddingResult> EmbeddingRunner::Run(const EmbeddingRequest& request,
                                                     Cancellation* cancel) {
  int advertised = 0;
  std::vector<DeviceRegistry::EmbeddingCandidate> candidates =
      registry_->EmbeddingDevices(request.model, &advertised);
  if (advertised == 0) {
    return absl::NotFoundError(absl::StrCat("no device on this mesh serves the embedding model '",
                                            request.model, "'"));
  }
  if (candidates.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "every device serving '", request.model, "' is unhealthy or its model server cannot "
        "serve now; try again shortly"));
  }
  int64_t tokens = 0;
  for (const std::string& text : request.input) tokens += CountTokens(text);
  int64_t price = 0;
  for (const auto& c : candidates) price = std::max(price, PricePer1kMicro(c.model));
  const int64_t most = CreditsForTokens(tokens, price) + 1;
  const int64_t bound = most + ledger_->FeeFor(most);
  LOOM_RETURN_IF_ERROR(ledger_->Reserve(request.request_id, request.client_account, bound,
                                        request.deadline - clock_->Now() +
                                            options_.reservation_margin));

  absl::Status last = absl::UnavailableError("no device tried");
  EmbeddingResult result;
  for (const auto& c : candidates) {
    if (result.attempts >= options_.max_attempts) break;
    if (cancel && cancel->IsCancelled()) {
      last = absl::CancelledError("the client went away");
      break;
    }
    ++result.attempts;
    EmbedCall call{.device_id = c.device.device_id(),
                   .provider_id = c.device.provider_id(),
                   .address = c.device.address(),
                   .deadline = request.deadline};
    call.request.set_request_id(request.request_id);
    call.request.set_attempt(result.attempts);
    call.request.set_model(request.model);
    for (const std::string& text : request.input) call.request.add_input(text);
    call.request.set_dimensions(request.dimensions);
    registry_->AddInflight(call.device_id, 1);
    absl::StatusOr<v1::EmbedResponse> out = devices_->Embed(call, cancel);
    registry_->AddInflight(call.device_id, -1);
    if (out.ok() && out->data_size() != static_cast<int>(request.input.size())) {
      out = absl::UnavailableError(absl::StrCat("device ", call.device_id, " returned ",
                                                out->data_size(), " embeddings for ",
                                                request.input.size(), " inputs"));
    }
    if (out.ok()) {
      absl::StatusOr<Settlement> settled = ledger_->Settle(
          {.request_id = request.request_id,
           .client_account = request.client_account,
           .records = {Record(request, call, c.model, tokens, result.attempts, clock_->Now())},
           .answer = ""});
      if (!settled.ok()) {
        (void)ledger_->Release(request.request_id);
        return settled.status();
      }
      result.response = *std::move(out);
      result.tokens = tokens;
      result.cost_micro = settled->charged_micro;
      result.device_id = call.device_id;
      result.provider_id = call.provider_id;
      return result;
    }
    last = out.status();
    spdlog::info("request {}: embeddings on {} failed (attempt {}): {}", request.request_id,
                 call.device_id, result.attempts, last.ToString());
    if (!IsRetryableOnAnotherDevice(last)) break;
  }
  if (absl::Status released = ledger_->Release(request.request_id); !released.ok()) {
    spdlog::error("request {}: releasing its reservation failed ({}); the ledger retries it",
                  request.request_id, released.ToString());
  }
  return last;
}

}  // namespace loom
