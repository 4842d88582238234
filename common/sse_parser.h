// File: common/sse_parser.h
// Incremental parser of Server-Sent Events (the text/event-stream format OpenAI-compatible
// servers stream completions in). Bytes arrive in arbitrary pieces; every complete event's
// data (its "data:" lines joined by "\n") is handed to the callback. Comments (":...") and
// other fields (event, id, retry) are skipped. Lines may end in \n, \r\n or \r.
//
// Not thread-safe (one parser per stream). Bounded: an event larger than max_event_bytes is an
// error (a broken or hostile server cannot make the worker buffer without limit).
#ifndef LOOM_COMMON_SSE_PARSER_H_
#define LOOM_COMMON_SSE_PARSER_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace loom {

class SseParser {
 public:
  // Receives one event's data; returns false to stop parsing (Feed then returns CANCELLED).
  using EventHandler = std::function<bool(absl::string_view data)>;

  explicit SseParser(size_t max_event_bytes = 1 << 20) : max_event_bytes_(max_event_bytes) {}

  // Parses `bytes`, calling `on_event` for each event it completes. RESOURCE_EXHAUSTED when an
  // event grows past the limit, CANCELLED when the handler asked to stop.
  absl::Status Feed(absl::string_view bytes, const EventHandler& on_event);

 private:
  absl::Status Line(absl::string_view line, const EventHandler& on_event);

  const size_t max_event_bytes_;
  std::string line_;       // the incomplete line so far
  std::string data_;       // the current event's data
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

}  // namespace loom

#endif  // LOOM_COMMON_SSE_PARSER_H_
