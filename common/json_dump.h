// File: common/json_dump.h
// The one way Loom turns nlohmann::json into text. nlohmann's plain dump() throws
// type_error 316 on a string that is not valid UTF-8; an uncaught throw in an HTTP content
// provider ends the process. DumpJson replaces invalid bytes with U+FFFD instead, so rendering
// a response can never fail after the work was done and charged.
#ifndef LOOM_COMMON_JSON_DUMP_H_
#define LOOM_COMMON_JSON_DUMP_H_

#include <string>

#include "nlohmann/json.hpp"

namespace loom {

inline std::string DumpJson(const nlohmann::json& value, int indent = -1) {
  return value.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace loom

#endif  // LOOM_COMMON_JSON_DUMP_H_
