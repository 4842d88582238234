// File: common/ids.h
// Random identifiers. Thread-safe.
#ifndef LOOM_COMMON_IDS_H_
#define LOOM_COMMON_IDS_H_

#include <string>

namespace loom {

// A random (version 4) UUID in canonical lowercase form.
std::string NewUuid();

}  // namespace loom

#endif  // LOOM_COMMON_IDS_H_
