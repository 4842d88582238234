// File: common/json_config.h
// Config files are JSON parsed into proto messages. Protobuf's JSON parser refuses unknown
// fields, so a typo gets an error that names the file and the field.
//
//   absl::StatusOr<loom::v1::WorkerConfig> config =
//       loom::LoadConfigFile<loom::v1::WorkerConfig>("worker.json");
#ifndef LOOM_COMMON_JSON_CONFIG_H_
#define LOOM_COMMON_JSON_CONFIG_H_

#include <string>
#include "absl/strings/string_view.h"

#include <google/protobuf/message.h>

#include "absl/status/statusor.h"

namespace loom {

// Largest config file accepted.
inline constexpr size_t kMaxConfigBytes = 1 << 20;

// Parses `json` into `message`; `origin` (a file name) prefixes every error.
absl::Status ParseJsonConfig(absl::string_view json, absl::string_view origin,
                             google::protobuf::Message* message);

// Reads and parses the file at `path`. NOT_FOUND if it cannot be read, INVALID_ARGUMENT with
// "PATH: ..." naming the field if it does not parse.
absl::Status LoadConfigFileInto(const std::string& path, google::protobuf::Message* message);

template <typename T>
absl::StatusOr<T> LoadConfigFile(const std::string& path) {
  T message;
  absl::Status status = LoadConfigFileInto(path, &message);
  if (!status.ok()) return status;
  return message;
}

// The proto3 JSON mapping of `message`, the form every CLI prints with --json.
std::string ToJson(const google::protobuf::Message& message, bool pretty = true);

}  // namespace loom

#endif  // LOOM_COMMON_JSON_CONFIG_H_
