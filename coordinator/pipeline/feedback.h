// File: coordinator/pipeline/feedback.h
// What clients say about their answers, and what the selector has learnt: the one path both
// front doors take for a verdict (POST /v1/feedback, the Feedback RPC) and for the affinity
// report (GET /loom/v1/affinities, the ListAffinities RPC, `loom affinities`, the metrics).
//
// A verdict is the client's, on its own settled request, once: the ledger keeps it and adds it
// to the outcomes of the models whose work reached the answer (the whole answer's weight is
// shared by its parts; a sub-task named alone takes it all) in one transaction, and the
// OutcomeModel counts what the ledger added. The id is the one the client was answered with:
// its own (scoped to its account in the ledger, request_runner.h) or the one assigned.
#ifndef LOOM_COORDINATOR_PIPELINE_FEEDBACK_H_
#define LOOM_COORDINATOR_PIPELINE_FEEDBACK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/outcome_model.h"
#include "ledger/ledger_store.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

// INVALID_ARGUMENT for an empty or oversized id or no rating; otherwise as
// LedgerStore::RecordFeedback (NOT_FOUND, ALREADY_EXISTS). `outcomes` may be null.
absl::StatusOr<v1::FeedbackResponse> ApplyFeedback(LedgerStore* ledger, OutcomeModel* outcomes,
                                                   const std::string& client_id,
                                                   const v1::FeedbackRequest& request);

// Every category of every model `devices` advertise, and of every model with observed
// outcomes: prior (the selector's table), observed counts and the blend; sorted by model, then
// category.
v1::ListAffinitiesResponse AffinityReport(const ModelSelector& selector,
                                          const std::vector<v1::DeviceInfo>& devices,
                                          const OutcomeModel* outcomes);

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_FEEDBACK_H_
