#include "common/sse_parser.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace loom {

absl::Status SseParser::Line(absl::string_view line, const EventHandler& on_event) {
  if (line.empty()) {  // blank line: dispatch
    if (!has_data_) return absl::OkStatus();
    const bool go_on = on_event(data_);
    data_.clear();
    has_data_ = false;
    return go_on ? absl::OkStatus() : absl::CancelledError("event handler stopped the stream");
  }
  if (line[0] == ':') return absl::OkStatus();  // comment
  absl::string_view field = line, value;
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field != "data") return absl::OkStatus();
  if (has_data_) data_ += '\n';
  data_.append(value.data(), value.size());
  has_data_ = true;
  if (data_.size() > max_event_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("server-sent event larger than ", max_event_bytes_, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status SseParser::Feed(absl::string_view bytes, const EventHandler& on_event) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the \n of a \r\n already ended the line
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      absl::Status s = Line(line_, on_event);
      line_.clear();
      if (!s.ok()) return s;
      continue;
    }
    line_ += c;
    if (line_.size() > max_event_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("server-sent event line longer than ", max_event_bytes_, " bytes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace loom
