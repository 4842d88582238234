// File: common/openai_wire.h
// The OpenAI chat-completions wire format, in one place for every side of Loom that speaks
// it: the coordinator's HTTP front door (parsing what clients send), the worker's `openai`
// backend (rendering what it sends upstream, parsing the chunks that come back) and the `loom`
// CLI (parsing streamed chunks). Field types are checked; nothing here throws.
//
//   v1::Sampling s;
//   absl::Status ok = ParseSampling(request_json, &s);   // 400-worthy message naming the field
//   AddSampling(s, &upstream_body);                      // the same fields, for a backend
//   ChatChunk c = ParseChatChunk(event_json);            // delta text, finish_reason, usage
#ifndef LOOM_COMMON_OPENAI_WIRE_H_
#define LOOM_COMMON_OPENAI_WIRE_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "loom/v1/common.pb.h"
#include "loom/v1/orchestrator.pb.h"
#include "nlohmann/json.hpp"

namespace loom {

// Reads temperature, top_p, stop (a string or up to 4 strings), seed, presence_penalty,
// frequency_penalty and user from a request object into `out`. Null means absent. Values out
// of OpenAI's documented ranges are INVALID_ARGUMENT naming the field.
absl::Status ParseSampling(const nlohmann::json& request, v1::Sampling* out);

// Reads Loom's extension of a request, the "loom" object: "mode" (passthrough, compiled or
// compete), "request_id" and "policy". Absent is fine; a wrong type is INVALID_ARGUMENT
// naming the field.
absl::Status ParseLoomExtension(const nlohmann::json& request, v1::CompleteRequest* out);

// A request's "loom.policy": a named policy ("loom-fast") or an object of name,
// max_price_per_1k and max_cost (credits), min_tokens_per_s, max_ttft_ms, trust (community,
// verified, owned), regions, private_only and weights {quality, cost, latency, carbon}.
// Types and unknown fields are checked here; ranges by the coordinator (PolicyBook::Validate).
absl::Status ParsePolicy(const nlohmann::json& policy, v1::Policy* out);

// The most choices one request may ask for (OpenAI's n).
inline constexpr int kMaxChoices = 8;

// Capability names a model advertises (ModelInfo.capabilities) and a request may need.
inline constexpr char kCapabilityTools[] = "tools";
inline constexpr char kCapabilityJsonSchema[] = "json_schema";
// The model takes image parts (OpenAI's "image_url" content parts).
inline constexpr char kCapabilityVision[] = "vision";
// The model reports log probabilities of its output tokens (logprobs, top_logprobs).
inline constexpr char kCapabilityLogprobs[] = "logprobs";
// The model continues a conversation whose last message is the assistant's own unfinished
// answer (assistant prefill: llama-server, Ollama; vLLM with continue_final_message), rather
// than answering it anew. Loom uses it to resume a stream on another device.
inline constexpr char kCapabilityContinue[] = "continue";
// The model makes embeddings (/v1/embeddings) and does not chat: it is never chosen for a
// completion.
inline constexpr char kCapabilityEmbeddings[] = "embeddings";

// Reads "tools" (function tools: {"type": "function", "function": {"name", ...}}),
// "tool_choice", "parallel_tool_calls" and "response_format" (text, json_object or
// json_schema with a schema object) into `out`, as JSON. INVALID_ARGUMENT naming the field.
absl::Status ParseStructure(const nlohmann::json& request, v1::Structure* out);

// The capabilities a request needs from its model, each with the request field that needs it:
// {"tools", "tools"} when tools are offered (or messages carry tool calls or results),
// {"json_schema", "response_format"} for JSON output.
std::vector<std::pair<std::string, std::string>> NeededCapabilities(
    const v1::Structure& structure,
    const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages);

// Writes a Structure's fields into an upstream request object.
void AddStructure(const v1::Structure& structure, nlohmann::json* request);

// One message as OpenAI's wire has it: content (null for an assistant turn that only calls
// tools), tool_calls, tool_call_id, name.
nlohmann::json MessageJson(const v1::ChatMessage& message);

// Writes the fields set in `sampling` into a request object.
void AddSampling(const v1::Sampling& sampling, nlohmann::json* request);

// The finish reasons Loom passes on; anything else a backend says becomes "stop".
std::string NormalizeFinishReason(const std::string& reason);

// A piece of a streamed tool call (choices[0].delta.tool_calls[i]): the first piece of a call
// has its id and name, later ones more of its arguments.
struct ToolCallDelta {
  int index = 0;
  std::string id, name, arguments;
};

// Assembles streamed tool-call pieces into OpenAI's message.tool_calls array.
class ToolCallAssembler {
 public:
  void Add(const ToolCallDelta& delta);
  bool empty() const { return calls_.empty(); }
  std::string Json() const;  // "" when empty

 private:
  std::vector<ToolCallDelta> calls_;  // by index
};

// One streamed chat.completion.chunk, as much of it as Loom uses.
struct ChatChunk {
  std::string content;                 // choices[0].delta.content; empty when absent or null
  std::string finish_reason;           // choices[0].finish_reason; empty when null
  std::optional<int64_t> prompt_tokens, completion_tokens;  // from "usage", when sent
  std::optional<std::string> error;    // an in-band {"error": ...}: its message
  std::vector<ToolCallDelta> tool_calls;  // choices[0].delta.tool_calls
  nlohmann::json logprobs;  // choices[0].logprobs.content entries of this chunk (array or null)
};

// Parses one SSE data payload; std::nullopt when it is not a JSON object.
std::optional<ChatChunk> ParseChatChunk(absl::string_view data);

}  // namespace loom

#endif  // LOOM_COMMON_OPENAI_WIRE_H_
