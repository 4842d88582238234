// File: coordinator/pipeline/request_scope.h
// What every stage of one request shares: its ledger id, deadline, cancellation, the event
// sink (serialised: stages emit from several threads), the attempt log (attempts, delivered
// work, the policy, excluded devices) and the clock. Owned by RequestRunner for the length of
// the request; a new piece of per-request state goes here, not into every stage's signature.
#ifndef LOOM_COORDINATOR_PIPELINE_REQUEST_SCOPE_H_
#define LOOM_COORDINATOR_PIPELINE_REQUEST_SCOPE_H_

#include <string>

#include "absl/time/time.h"
#include "common/cancellation.h"
#include "common/clock.h"
#include "coordinator/pipeline/attempt_runner.h"

namespace loom {

struct RequestScope {
  std::string request_id;          // the ledger's id (a client's own id scoped to its account)
  absl::Time deadline = absl::InfiniteFuture();
  Cancellation* cancel = nullptr;  // fires when the client goes away
  EventSink emit;                  // empty: nobody listens (stages then build no events)
  AttemptLog* log = nullptr;
  Clock* clock = Clock::Real();    // never null
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_REQUEST_SCOPE_H_
