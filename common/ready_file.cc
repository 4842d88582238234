#include "common/ready_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace loom {

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::UnavailableError(absl::StrCat(tmp, ": cannot write: ", strerror(errno)));
    out << contents;
    if (!out.flush()) return absl::UnavailableError(absl::StrCat(tmp, ": write failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat(path, ": rename failed: ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace loom
