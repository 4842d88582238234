// ledger_stress: a test helper that settles requests PREFIX-0 .. PREFIX-(COUNT-1) through the
// real SqliteLedger, as the coordinator does (reserve, then settle two records), printing one
// line per request ("settled ID", "already ID" or "refused ID") as soon as it is durable.
// Like a restarted coordinator, it first releases the reservations a killed run of the same
// prefix left behind.
// Integration tests SIGKILL it at random points and run several at once on one file.
//
//   ledger_stress --db=PATH --client=NAME --prefix=req --count=200 [--cost_micro=300000]
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "ledger/sqlite_ledger.h"

ABSL_FLAG(std::string, db, "", "Ledger file.");
ABSL_FLAG(std::string, client, "stress", "Client account name.");
ABSL_FLAG(std::string, prefix, "req", "Request id prefix.");
ABSL_FLAG(int, count, 100, "Requests to settle.");
ABSL_FLAG(int64_t, cost_micro, 300'000, "Cost of each request (two records).");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // One holder per prefix, so that a run killed part way releases its own reservations when
  // it runs again, as a restarted coordinator does (ReleaseOrphans), and only those.
  auto ledger = loom::SqliteLedger::Open(
      {.path = absl::GetFlag(FLAGS_db), .holder = "stress-" + absl::GetFlag(FLAGS_prefix)});
  if (!ledger.ok()) {
    std::cerr << ledger.status() << "\n";
    return 2;
  }
  if (auto released = (*ledger)->ReleaseOrphans(); !released.ok()) {
    std::cerr << released.status() << "\n";
    return 2;
  }
  const std::string client = loom::ClientAccount(absl::GetFlag(FLAGS_client));
  const int64_t cost = absl::GetFlag(FLAGS_cost_micro);
  for (int i = 0; i < absl::GetFlag(FLAGS_count); ++i) {
    const std::string id = absl::StrCat(absl::GetFlag(FLAGS_prefix), "-", i);
    absl::Status reserved = (*ledger)->Reserve(id, client, cost + cost / 2, absl::Minutes(10));
    if (reserved.code() == absl::StatusCode::kAlreadyExists) {
      std::cout << "already " << id << std::endl;
      continue;
    }
    if (!reserved.ok()) {
      std::cout << "refused " << id << std::endl;
      continue;
    }
    std::vector<loom::v1::ContributionRecord> records(2);
    for (int r = 0; r < 2; ++r) {
      records[r].set_request_id(id);
      records[r].set_sub_task_id(absl::StrCat("t", r));
      records[r].set_attempt(1);
      records[r].set_device_id(absl::StrCat("dev-", r));
      records[r].set_provider_id(absl::StrCat("prov-", r));
      records[r].set_model("sim");
      records[r].set_role(loom::v1::CONTRIBUTION_ROLE_EXECUTE);
      records[r].set_token_count(64);
      records[r].set_weight(0.5);
      records[r].set_credits_micro(r == 0 ? cost / 2 : cost - cost / 2);
    }
    auto s = (*ledger)->Settle({id, client, records});
    if (!s.ok()) {
      std::cout << "refused " << id << " " << s.status() << std::endl;
      (void)(*ledger)->Release(id);
      continue;
    }
    std::cout << (s->already_settled ? "already " : "settled ") << id << std::endl;
  }
  return 0;
}
