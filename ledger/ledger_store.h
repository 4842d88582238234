// File: ledger/ledger_store.h
// The coordinator's seam to the credit ledger (DESIGN.md, "Ledger").
//
// Ownership: the coordinator owns one LedgerStore for its lifetime.
// Thread safety: implementations are thread-safe.
// Failure: every method returns a Status; a failed Settle writes nothing (all or nothing).
// Settlement is exactly-once per request id: settling an id again returns the first
// settlement with already_settled=true and writes nothing.
#ifndef LOOM_LEDGER_LEDGER_STORE_H_
#define LOOM_LEDGER_LEDGER_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "loom/v1/common.pb.h"

namespace loom {

// The payload that marks a FAILED_PRECONDITION as "the client lacks credits" (HTTP 402).
inline constexpr char kInsufficientCreditsPayload[] = "loom.dev/insufficient-credits";
inline bool IsInsufficientCredits(const absl::Status& s) {
  return s.GetPayload(kInsufficientCreditsPayload).has_value();
}

// Account ids: "client:<name>", "provider:<id>".
inline std::string ClientAccount(const std::string& name) { return "client:" + name; }
inline std::string ProviderAccount(const std::string& provider_id) {
  return "provider:" + provider_id;
}

struct SettlementRequest {
  std::string request_id;
  std::string client_account;  // charged the sum of the records' credits
  std::vector<v1::ContributionRecord> records;  // successful model calls only
  // Optional: the answer to hand back when the same request id is sent again (a serialized
  // CompleteResponse), kept in the same transaction as the settlement, for the ledger's answer
  // retention. Empty: none is kept.
  std::string answer;
};

// The answer a settled request left for its replays.
struct StoredAnswer {
  std::string account;         // the client account that was charged
  std::string answer;          // as given to Settle
  std::string settlement_id;
  int64_t charged_micro = 0;
};

struct Settlement {
  std::string settlement_id;  // the ledger transaction
  int64_t charged_micro = 0;  // records' credits plus the fee
  int64_t fee_micro = 0;
  bool already_settled = false;
};

struct PayoutRow {
  std::string provider_id;
  int64_t earned_micro = 0;     // settlement credits in the period
  int64_t tokens = 0;
  int64_t requests = 0;
  int64_t devices = 0;
  int64_t paid_out_micro = 0;   // cash-outs in the period
  int64_t unpaid_micro = 0;     // balance now
};

struct PayoutFilter {
  int64_t since_ms = 0;                       // inclusive
  int64_t until_ms = INT64_MAX;               // exclusive
  std::string provider_id;                    // empty = all
};

struct RecordFilter {
  std::string request_id;  // empty = all
  std::string provider_id; // empty = all
  int64_t limit = 1000;
};

// Observed outcomes of one model on one category (weighted counts): a change to add, or the
// totals kept.
struct OutcomeDelta {
  std::string model;
  v1::TaskCategory category = v1::TASK_CATEGORY_UNSPECIFIED;
  double good = 0;
  double bad = 0;
};

// A client's verdict on one of its settled requests.
struct FeedbackVerdict {
  std::string request_id;
  std::string client_account;  // who gives it: must be the account the request was charged to
  bool good = false;
  std::string sub_task_id;     // empty: the whole answer
};

class LedgerStore {
 public:
  virtual ~LedgerStore() = default;

  // Holds `amount_micro` of `account` for `request_id` until Settle or Release, or until `ttl`
  // passes. FAILED_PRECONDITION ("insufficient credits ...") when the account's available
  // balance is lower; ALREADY_EXISTS for a request id that was already settled (a replay: it
  // must not run again); ABORTED while a live reservation holds the id (the request is running,
  // here or on another coordinator: a duplicate must not run beside it).
  virtual absl::Status Reserve(const std::string& request_id, const std::string& account,
                               int64_t amount_micro, absl::Duration ttl) = 0;
  // Drops the reservation of `request_id` (none: OK).
  virtual absl::Status Release(const std::string& request_id) = 0;
  // Balance minus live reservations. UNIMPLEMENTED where a ledger cannot say (the coordinator
  // then reserves as if every device were affordable).
  virtual absl::StatusOr<int64_t> Available(const std::string& account) {
    return absl::UnimplementedError("this ledger does not report available credits");
  }
  // The fee Settle adds to `credits_micro` of records (0 without a fee). Monotone, so the fee
  // of a cost bound bounds the fee of any settlement under it.
  virtual int64_t FeeFor(int64_t credits_micro) const { return 0; }
  // Charges the client and credits providers, consuming the request's reservation.
  // FAILED_PRECONDITION when the client cannot pay (nothing is written).
  virtual absl::StatusOr<Settlement> Settle(const SettlementRequest& request) = 0;
  // The answer kept by the settlement of `request_id`. NOT_FOUND when the request was not
  // settled, was settled without an answer, or its answer is past the retention window.
  // Earnings per provider in a period (settlement credits, tokens, requests, devices, paid
  // out, unpaid now).
  virtual absl::StatusOr<std::vector<PayoutRow>> Payouts(const PayoutFilter& filter) {
    return absl::UnimplementedError("this ledger does not report payouts");
  }
  virtual absl::StatusOr<StoredAnswer> Answer(const std::string& request_id) {
    return absl::NotFoundError(absl::StrCat("no answer is kept for request ", request_id));
  }
  virtual absl::StatusOr<std::vector<v1::ContributionRecord>> ListRecords(
      const RecordFilter& filter) = 0;

  // Feedback and outcome statistics (the selector's learnt affinities, outcome_model.h).
  // RecordFeedback keeps the verdict and adds it to the outcomes of the records that made the
  // answer (ContributionRecord.in_answer), in one transaction, and returns what it added: 1 to
  // the sub-task named, or 1/n to each of the answer's n parts. NOT_FOUND for a request not
  // settled for this client (another client's request included); INVALID_ARGUMENT for a
  // sub-task that is not part of the answer; ALREADY_EXISTS when this client rated the request already
  // (nothing is written).
  virtual absl::StatusOr<std::vector<OutcomeDelta>> RecordFeedback(const FeedbackVerdict& verdict) {
    return absl::UnimplementedError("this ledger does not keep feedback");
  }
  // Adds observed outcomes (a compete verdict, a missed deadline) to the totals.
  virtual absl::Status AddOutcomes(const std::vector<OutcomeDelta>& deltas) {
    return absl::UnimplementedError("this ledger does not keep outcomes");
  }
  // The totals, one per (model, category) observed.
  virtual absl::StatusOr<std::vector<OutcomeDelta>> Outcomes() {
    return absl::UnimplementedError("this ledger does not keep outcomes");
  }

  // The client account an API key is bound to. UNAUTHENTICATED for an unknown or revoked key.
  virtual absl::StatusOr<std::string> Authenticate(const std::string& api_key) = 0;
};

}  // namespace loom

#endif  // LOOM_LEDGER_LEDGER_STORE_H_
