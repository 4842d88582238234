// File: coordinator/front/responses_api.h
// OpenAI's Responses API (POST /v1/responses), the stateless text subset that SDKs use by
// default (the Vercel AI SDK's `openai(model)`, the openai SDK's `responses.create`): input as
// a string or as message items with text parts, `instructions`, `max_output_tokens`,
// `temperature`, `top_p`, `stream`. It maps onto the same CompleteRequest as chat completions,
// so routing, billing and the abandoned-request rule are the same.
//
// Function tools (`tools` of type function, `tool_choice`, `parallel_tool_calls`) and the
// function_call / function_call_output items of the turn after a call map onto chat's tools
// and tool messages; the model's calls come back as function_call output items. Output items
// sent back as item_reference are resolved from a ResponseItemCache (an hour, in memory).
// Refused by name with 400 (never dropped silently; --drop_params drops them instead):
// `previous_response_id` and `conversation` (Loom keeps no conversation state), hosted tool
// types (web search, files, ...), `text.format` other than text, `reasoning`, `background`, `include`,
// image and file parts. Ignored as harmless: `store` (nothing is stored), `metadata`, `user`,
// `parallel_tool_calls`, `truncation`, `service_tier`, `prompt_cache_key`,
// `safety_identifier`.
//
//   ResponsesRequest parsed;
//   absl::Status s = ParseResponsesRequest(body, drop_params, &parsed);
//   json done = ResponseJson(id, created, parsed.model, "completed", text, usage...);
//   ResponsesStream stream(id, created, model);   // the SSE events, in order
#ifndef LOOM_COORDINATOR_FRONT_RESPONSES_API_H_
#define LOOM_COORDINATOR_FRONT_RESPONSES_API_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

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

// The output item an "item_reference" input item names (what a client that lets the server
// store its outputs, the AI SDK's default, sends back instead of the item), or nullopt.
using ItemResolver = std::function<std::optional<nlohmann::json>(const std::string& item_id)>;

// INVALID_ARGUMENT naming the field for anything malformed or unsupported (see above); an
// item_reference that `resolve` does not know is refused with what to do instead.
absl::Status ParseResponsesRequest(const std::string& body, bool drop_unsupported,
                                   ResponsesRequest* out, const ItemResolver& resolve = nullptr);

// Output items of recent responses by item id, per client, so a later request's
// item_reference can be answered: bounded in count (oldest out first) and in age. In memory
// on this coordinator only. Thread-safe.
class ResponseItemCache {
 public:
  explicit ResponseItemCache(size_t max_items = 20000, absl::Duration ttl = absl::Hours(1))
      : max_items_(max_items), ttl_(ttl) {}
  // Keeps every item of `response["output"]` for `client`.
  void Put(const std::string& client, const nlohmann::json& response, absl::Time now);
  std::optional<nlohmann::json> Get(const std::string& client, const std::string& item_id,
                                    absl::Time now);

 private:
  const size_t max_items_;
  const absl::Duration ttl_;
  absl::Mutex mu_;
  struct Kept {
    nlohmann::json item;
    absl::Time at;
  };
  std::map<std::string, Kept> items_ ABSL_GUARDED_BY(mu_);   // "client/item_id"
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);       // keys, oldest first
};

// A response object. `status` is "completed", "incomplete" (finish_reason "length":
// incomplete_details.reason is max_output_tokens) or "in_progress" (no output yet).
// The model's tool calls (`tool_calls_json`, chat form) follow as function_call items; the
// message item is left out when a response is only tool calls.
nlohmann::json ResponseJson(const std::string& id, int64_t created, const std::string& model,
                            const std::string& status, const std::string& text,
                            int64_t input_tokens, int64_t output_tokens,
                            const std::string& tool_calls_json = "");

// The streamed form: each call returns the SSE events to write ("event: T\ndata: {...}\n\n"),
// numbered in order. Start once, Delta per piece of text, then Finish or Fail.
class ResponsesStream {
 public:
  ResponsesStream(std::string id, int64_t created, std::string model);
  std::string Start();  // response.created, in_progress, the message item and its text part
  std::string Delta(const std::string& text);
  // The done events and response.completed (or response.incomplete for "length").
  // Tool calls (chat form) follow as function_call items, each with its arguments whole.
  std::string Finish(const std::string& finish_reason, int64_t input_tokens,
                     int64_t output_tokens, const nlohmann::json& loom,
                     const std::string& tool_calls_json = "");
  std::string Fail(const std::string& code, const std::string& message);  // response.failed
  // The response object of the last Finish (null before).
  const nlohmann::json& completed() const { return completed_; }

 private:
  std::string Event(const std::string& type, nlohmann::json data);
  const std::string id_, item_id_;
  const int64_t created_;
  const std::string model_;
  std::string text_;
  int64_t sequence_ = 0;
  nlohmann::json completed_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_RESPONSES_API_H_
