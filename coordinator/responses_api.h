// File: coordinator/responses_api.h
// OpenAI's Responses API (POST /v1/responses), the stateless text subset that SDKs use by
// default (the Vercel AI SDK's `openai(model)`, the openai SDK's `responses.create`): input as
// a string or as message items with text parts, `instructions`, `max_output_tokens`,
// `temperature`, `top_p`, `stream`. It maps onto the same CompleteRequest as chat completions,
// so routing, billing and the abandoned-request rule are the same.
//
// Refused by name with 400 (never dropped silently; --drop_params drops them instead):
// `previous_response_id` and `conversation` (Loom keeps no conversation state), tools and
// function-call items, `text.format` other than text, `reasoning`, `background`, `include`,
// image and file parts. Ignored as harmless: `store` (nothing is stored), `metadata`, `user`,
// `parallel_tool_calls`, `truncation`, `service_tier`, `prompt_cache_key`,
// `safety_identifier`.
//
//   ResponsesRequest parsed;
//   absl::Status s = ParseResponsesRequest(body, drop_params, &parsed);
//   json done = ResponseJson(id, created, parsed.model, "completed", text, usage...);
//   ResponsesStream stream(id, created, model);   // the SSE events, in order
#ifndef LOOM_COORDINATOR_RESPONSES_API_H_
#define LOOM_COORDINATOR_RESPONSES_API_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "loom/v1/orchestrator.pb.h"
#include "nlohmann/json.hpp"

namespace loom {

struct ResponsesRequest {
  v1::CompleteRequest request;  // messages, max_tokens, sampling, model pin, loom extension
  std::string model;            // as the client named it
  bool stream = false;
  std::vector<std::string> dropped;  // fields dropped under drop_unsupported
};

// INVALID_ARGUMENT naming the field for anything malformed or unsupported (see above).
absl::Status ParseResponsesRequest(const std::string& body, bool drop_unsupported,
                                   ResponsesRequest* out);

// A response object. `status` is "completed", "incomplete" (finish_reason "length":
// incomplete_details.reason is max_output_tokens) or "in_progress" (no output yet).
nlohmann::json ResponseJson(const std::string& id, int64_t created, const std::string& model,
                            const std::string& status, const std::string& text,
                            int64_t input_tokens, int64_t output_tokens);

// The streamed form: each call returns the SSE events to write ("event: T\ndata: {...}\n\n"),
// numbered in order. Start once, Delta per piece of text, then Finish or Fail.
class ResponsesStream {
 public:
  ResponsesStream(std::string id, int64_t created, std::string model);
  std::string Start();  // response.created, in_progress, the message item and its text part
  std::string Delta(const std::string& text);
  // The done events and response.completed (or response.incomplete for "length").
  std::string Finish(const std::string& finish_reason, int64_t input_tokens,
                     int64_t output_tokens, const nlohmann::json& loom);
  std::string Fail(const std::string& code, const std::string& message);  // response.failed

 private:
  std::string Event(const std::string& type, nlohmann::json data);
  const std::string id_, item_id_;
  const int64_t created_;
  const std::string model_;
  std::string text_;
  int64_t sequence_ = 0;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_RESPONSES_API_H_
