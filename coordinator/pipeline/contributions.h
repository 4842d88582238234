// File: coordinator/pipeline/contributions.h
// What a request's model calls earn: one ContributionRecord per call whose output was used
// (and per streamed part of a failed attempt that the answer kept or the client saw), credited
// at the model's price for the tokens received; each record's weight is its share of the
// request's tokens; a compete candidate that did not win is paid its share (the payout rule).
// The client is charged exactly the sum of the records' credits (the ledger's fee on top).
#ifndef LOOM_COORDINATOR_PIPELINE_CONTRIBUTIONS_H_
#define LOOM_COORDINATOR_PIPELINE_CONTRIBUTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/pipeline/attempt_runner.h"
#include "loom/v1/common.pb.h"

namespace loom {

// What a record's work was, for the feedback on it (ContributionRecord.category, in_answer).
struct RecordKind {
  v1::TaskCategory category = v1::TASK_CATEGORY_UNSPECIFIED;
  bool in_answer = false;
};

// The records of one call: the streamed parts of its failed attempts that were kept or seen
// (CallResult::earlier), then the attempt that finished.
void AddRecords(std::vector<v1::ContributionRecord>* records, const std::string& request_id,
                const std::string& sub_task_id, v1::ContributionRole role, const CallResult& call,
                absl::Time now, RecordKind kind = {});

// A compete candidate that did not win: `credits` at `share` (0-1), rounded down.
int64_t ParticipantCredits(int64_t credits, double share);
// The payout rule in words, for the receipt and the plan.
std::string PayoutRule(double share);

// Sets each record's weight to its share of the request's tokens (equal shares when no record
// has tokens). Returns the total tokens.
int64_t SetWeights(std::vector<v1::ContributionRecord>* records);

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_CONTRIBUTIONS_H_
