// File: common/ready_file.h
// Daemons announce that they serve by writing a JSON object with their bound addresses to
// --ready_file (so tests and scripts can bind port 0). The file appears atomically: it is
// written beside the target and renamed, so a reader never sees half of it.
#ifndef LOOM_COMMON_READY_FILE_H_
#define LOOM_COMMON_READY_FILE_H_

#include <string>

#include "absl/status/status.h"

namespace loom {

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace loom

#endif  // LOOM_COMMON_READY_FILE_H_
