// File: common/utf8.h
// The one place where Loom makes text valid UTF-8 and cuts it. Every byte that comes from a
// client, a device or an upstream model server and may reach a prompt, a status message, a
// proto string field or JSON goes through one of these; every cut of text happens at a
// character boundary. (nlohmann::json throws on invalid UTF-8 when dumping, protobuf refuses
// it in proto3 strings: a single stray byte must not abort a process or lose an answer.)
//
//   std::string label = TruncateUtf8(prompt, 57, "...");   // never splits a character
//   std::string safe = ToValidUtf8(upstream_body);          // invalid bytes -> U+FFFD
//
// All functions are pure and thread-safe.
#ifndef LOOM_COMMON_UTF8_H_
#define LOOM_COMMON_UTF8_H_

#include <cstddef>
#include <string>
#include "absl/strings/string_view.h"

namespace loom {

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// `text` with every ill-formed sequence replaced by U+FFFD (one per maximal invalid
// subpart, as the Unicode standard recommends). Valid text is returned unchanged.
std::string ToValidUtf8(absl::string_view text);

// The length of the longest prefix of `text` that is at most `max_bytes` long and does not end
// inside a character (assuming `text` is valid UTF-8; on invalid text it still never returns
// more than max_bytes).
size_t Utf8PrefixLength(absl::string_view text, size_t max_bytes);

// `text` cut to at most `max_bytes` at a character boundary, with `suffix` appended when
// anything was cut. The suffix does not count against max_bytes.
std::string TruncateUtf8(absl::string_view text, size_t max_bytes, absl::string_view suffix = "");

// The length of the longest prefix of `text` that is complete UTF-8, so a streamed piece that
// ends inside a character can hold its tail back until the next piece arrives.
size_t CompleteUtf8Length(absl::string_view text);

}  // namespace loom

#endif  // LOOM_COMMON_UTF8_H_
