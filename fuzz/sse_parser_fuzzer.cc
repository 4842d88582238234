// Fuzzes the Server-Sent Events parser of the openai backend, differentially: the events must
// not depend on how the stream is split into reads (whole, byte by byte, or at the split point
// the first byte chooses), and no event exceeds the size limit.
#include <cstdint>
#include <string>
#include <vector>

#include "common/sse_parser.h"
#include "fuzz/fuzz_check.h"

namespace {

struct Parsed {
  std::vector<std::string> events;
  absl::StatusCode code = absl::StatusCode::kOk;
};

constexpr size_t kLimit = 4096;

Parsed Run(absl::string_view stream, size_t piece) {
  loom::SseParser parser(kLimit);
  Parsed out;
  for (size_t at = 0; at < stream.size() && out.code == absl::StatusCode::kOk; at += piece) {
    absl::Status s = parser.Feed(stream.substr(at, piece), [&](absl::string_view data) {
      FUZZ_CHECK(data.size() <= kLimit);
      out.events.emplace_back(data);
      return true;
    });
    out.code = s.code();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Parsed whole = Run(stream, stream.size() + 1);
  const Parsed bytes = Run(stream, 1);
  const Parsed split = Run(stream, 1 + data[0] % 64);
  FUZZ_CHECK(whole.code == bytes.code && whole.code == split.code);
  if (whole.code == absl::StatusCode::kOk) {
    FUZZ_CHECK(whole.events == bytes.events);
    FUZZ_CHECK(whole.events == split.events);
  }
  return 0;
}
