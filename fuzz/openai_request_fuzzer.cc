// Fuzzes the OpenAI chat-completion body parser of the HTTP front door: any bytes give either
// INVALID_ARGUMENT or a request with at least one message and a non-negative max_tokens.
#include <cstdint>
#include <string>

#include "coordinator/front/http_front_door.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  loom::v1::CompleteRequest request;
  bool stream = false, include_usage = false;
  std::string model;
  absl::Status s = loom::ParseChatRequest(body, &request, &stream, &include_usage, &model);
  if (s.ok()) {
    FUZZ_CHECK(request.messages_size() > 0);
    FUZZ_CHECK(request.max_tokens() >= 0);
    FUZZ_CHECK(!model.empty());
  } else {
    FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument || s.code() == absl::StatusCode::kNotFound);
    FUZZ_CHECK(!s.message().empty());
  }
  return 0;
}
