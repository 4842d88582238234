// File: tests/fakes/ledger_records.h
// A contribution record for ledger tests: one execute attempt of `task` on provider's device,
// 10 tokens, `credits` micro-credits, a code answer (category and in_answer set, for feedback).
#ifndef LOOM_TESTS_FAKES_LEDGER_RECORDS_H_
#define LOOM_TESTS_FAKES_LEDGER_RECORDS_H_

#include <cstdint>
#include <string>

#include "loom/v1/common.pb.h"

namespace loom {

inline v1::ContributionRecord Record(const std::string& request, const std::string& provider,
                                     int64_t credits, int attempt = 1,
                                     const std::string& task = "t1") {
  v1::ContributionRecord r;
  r.set_request_id(request);
  r.set_sub_task_id(task);
  r.set_attempt(attempt);
  r.set_device_id("dev-" + provider);
  r.set_provider_id(provider);
  r.set_model("m");
  r.set_role(v1::CONTRIBUTION_ROLE_EXECUTE);
  r.set_token_count(10);
  r.set_weight(1.0);
  r.set_credits_micro(credits);
  r.set_category(v1::TASK_CATEGORY_CODE);
  r.set_in_answer(true);
  return r;
}

}  // namespace loom

#endif  // LOOM_TESTS_FAKES_LEDGER_RECORDS_H_
