// File: common/logging.h
// spdlog setup shared by every binary: one line per event, to stderr, with the program name,
// so logs of several processes in one terminal or journal stay readable.
#ifndef LOOM_COMMON_LOGGING_H_
#define LOOM_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace loom {

// `level` is one of trace, debug, info, warn, error, off. INVALID_ARGUMENT otherwise.
absl::Status InitLogging(const std::string& program, const std::string& level);

}  // namespace loom

#endif  // LOOM_COMMON_LOGGING_H_
