// File: coordinator/pipeline/policy_report.h
// The receipt's policy part (v1::PolicyReport): the limits in force, which of them bound each
// call, and what the request's delivered tokens cost on the chosen devices beside the cheapest
// and the best-affinity device the limits allowed for each call, with an estimate of the
// carbon emitted (policy.h). From the request's AttemptLog, after the calls have run.
#ifndef LOOM_COORDINATOR_PIPELINE_POLICY_REPORT_H_
#define LOOM_COORDINATOR_PIPELINE_POLICY_REPORT_H_

#include "coordinator/pipeline/attempt_runner.h"
#include "coordinator/mesh/policy.h"
#include "loom/v1/orchestrator.pb.h"

namespace loom {

v1::PolicyReport PolicyReportFor(const RequestPolicy& policy, const AttemptLog& log);

}  // namespace loom

#endif  // LOOM_COORDINATOR_PIPELINE_POLICY_REPORT_H_
