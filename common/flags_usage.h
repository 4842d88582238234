// File: common/flags_usage.h
// --help for every Loom binary: the usage text, then the flags its main.cc defines. (Abseil's
// default only lists flags from a file named after the program, which matches none of ours.)
#ifndef LOOM_COMMON_FLAGS_USAGE_H_
#define LOOM_COMMON_FLAGS_USAGE_H_

#include <string>

namespace loom {

// Call before absl::ParseCommandLine.
void SetUsage(const std::string& usage);

}  // namespace loom

#endif  // LOOM_COMMON_FLAGS_USAGE_H_
