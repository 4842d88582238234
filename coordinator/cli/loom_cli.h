// File: coordinator/cli/loom_cli.h
// What the `loom` client CLI prints, separated from its gRPC calls so tests can check it.
#ifndef LOOM_COORDINATOR_CLI_LOOM_CLI_H_
#define LOOM_COORDINATOR_CLI_LOOM_CLI_H_

#include <string>

#include "loom/v1/orchestrator.pb.h"

namespace loom {

// One row per device: id, provider, state, load, models (family, size), address.
std::string FormatDevices(const v1::ListDevicesResponse& devices);

// The plan: kind, reasons, sub-tasks and the device chosen for each.
std::string FormatPlan(const v1::CompilationPlan& plan);

// The footer printed after a streamed answer: request id, who served it, tokens, cost.
std::string FormatSummary(const v1::CompleteResponse& response);

// One row per model and category: prior, observed outcomes, blended affinity.
std::string FormatAffinities(const v1::ListAffinitiesResponse& affinities);

// What a verdict changed: "request R rated good: llama-3.1-8b/code +1 good".
std::string FormatFeedback(const v1::FeedbackResponse& response, bool good);

// A progress line for a sub-task event, e.g. "[retry] sub-task 1a2b… on dev-a failed: …".
std::string FormatEvent(const v1::SubTaskEvent& event);

}  // namespace loom

#endif  // LOOM_COORDINATOR_CLI_LOOM_CLI_H_
