// File: coordinator/pipeline/request_ids.cc
// One request id is served once: the first request with an id claims it, duplicates arriving
// meanwhile wait for it (bounded by their deadline and their client), and a duplicate of a
// settled request gets the kept answer replayed, never a second charge.
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "coordinator/pipeline/request_runner.h"

namespace loom {

absl::Status RequestRunner::ClaimId(const std::string& request_id, absl::Time deadline,
                                    Cancellation* cancel) {
  // Bounded: each pass either claims the id or waits for the holder to finish, and every
  // wait ends by the deadline or the client's cancellation.
  while (true) {
    std::shared_ptr<Cancellation> running;
    {
      absl::MutexLock lock(&flights_mu_);
      auto [it, inserted] = flights_.try_emplace(request_id);
      if (inserted) {
        it->second = std::make_shared<Cancellation>();
        return absl::OkStatus();
      }
      running = it->second;
      ++duplicates_waiting_;
    }
    absl::Cleanup count = [this] {
      absl::MutexLock lock(&flights_mu_);
      --duplicates_waiting_;
    };
    Cancellation wake;
    const int on_done = running->OnCancel([&wake] { wake.Cancel(); });
    const int on_cancel = cancel ? cancel->OnCancel([&wake] { wake.Cancel(); }) : -1;
    wake.WaitUntil(deadline, *clock_);
    running->RemoveCallback(on_done);
    if (cancel) cancel->RemoveCallback(on_cancel);
    if (running->IsCancelled()) continue;  // finished: claim it, or find it settled
    if (cancel && cancel->IsCancelled()) {
      return absl::CancelledError("the client went away while the same request id was running");
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "a request with the same id was still running when this one's deadline passed"));
  }
}

int RequestRunner::DuplicatesWaiting() const {
  absl::MutexLock lock(&flights_mu_);
  return duplicates_waiting_;
}

void RequestRunner::UnclaimId(const std::string& request_id) {
  std::shared_ptr<Cancellation> done;
  {
    absl::MutexLock lock(&flights_mu_);
    auto it = flights_.find(request_id);
    done = std::move(it->second);
    flights_.erase(it);
  }
  done->Cancel();  // wakes the duplicates waiting for it
}

absl::StatusOr<v1::CompleteResponse> RequestRunner::Replay(const v1::CompleteRequest& request,
                                                           const std::string& request_id,
                                                           const absl::Status& settled,
                                                           const EventSink& sink) {
  absl::StatusOr<StoredAnswer> kept = ledger_->Answer(request_id);
  v1::CompleteResponse response;
  if (!kept.ok() || !response.ParseFromString(kept->answer)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "request ", request.request_id(), " was already served and charged, and no answer is "
        "kept for it: it was cancelled by its client before it finished (and charged for the "
        "part produced), or its answer is no longer kept; send a new id to ask again"));
  }
  response.set_request_id(request.request_id());
  response.set_cost_micro(kept->charged_micro);
  response.set_settlement_id(kept->settlement_id);
  response.set_replayed(true);
  spdlog::info("request {}: replayed the answer of settlement {}", request_id,
               kept->settlement_id);
  if (sink) {
    v1::CompleteEvent delta;
    delta.mutable_output()->set_text(response.output());
    delta.mutable_output()->set_answer(true);
    sink(delta);
    v1::CompleteEvent final_event;
    *final_event.mutable_final() = response;
    sink(final_event);
  }
  return response;
}

}  // namespace loom
