#include "common/json_config.h"

#include <fstream>
#include <sstream>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"

namespace loom {

absl::Status ParseJsonConfig(absl::string_view json, absl::string_view origin,
                             google::protobuf::Message* message) {
  if (json.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": config is ", json.size(), " bytes; the limit is ", kMaxConfigBytes));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": invalid ", message->GetDescriptor()->name(), ": ",
                     std::string(status.message())));
  }
  return absl::OkStatus();
}

absl::Status LoadConfigFileInto(const std::string& path, google::protobuf::Message* message) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return ParseJsonConfig(buffer.str(), path, message);
}

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.always_print_primitive_fields = true;
  std::string out;
  // Printing a valid in-memory message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace loom
