// File: coordinator/front/console_assets.h
// The web console's static files (coordinator/console/), embedded in the binary at build time
// by cmake/embed_console.cmake: nothing is read from disk or fetched at run time.
#ifndef LOOM_COORDINATOR_FRONT_CONSOLE_ASSETS_H_
#define LOOM_COORDINATOR_FRONT_CONSOLE_ASSETS_H_

#include <string_view>

#include "absl/types/span.h"

namespace loom {

struct ConsoleAsset {
  const char* path;          // under /console/, e.g. "index.html"
  const char* content_type;
  std::string_view body;
};

absl::Span<const ConsoleAsset> ConsoleAssets();

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_CONSOLE_ASSETS_H_
