// File: coordinator/front/openai_codec.h
// The HTTP door's OpenAI wire codec, apart from its handlers (TF Serving keeps its JSON codec
// apart the same way): request bodies into CompleteRequests, Statuses into OpenAI error
// responses, and answers into OpenAI's JSON shapes. The field-level parsing shared with the
// CLI and the worker is common/openai_wire.h.
//
// Pure functions; thread-safe.
#ifndef LOOM_COORDINATOR_FRONT_OPENAI_CODEC_H_
#define LOOM_COORDINATOR_FRONT_OPENAI_CODEC_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/auto_model.h"
#include "coordinator/front/http_server.h"
#include "loom/v1/orchestrator.pb.h"
#include "nlohmann/json.hpp"

namespace loom {

// Parses an OpenAI chat completion request body into a CompleteRequest (messages, max_tokens,
// sampling, model as a pin or loom-auto, loom.mode), with stream and
// stream_options.include_usage. INVALID_ARGUMENT naming the field for anything malformed, and
// for fields no device honours yet (tools, response_format json, n > 1, logprobs, ...) unless
// `drop_unsupported`, when their names go to `dropped`. Exposed for tests and fuzzing.
absl::Status ParseChatRequest(const std::string& body, v1::CompleteRequest* out, bool* stream,
                              bool* include_usage, std::string* model,
                              bool drop_unsupported = false,
                              std::vector<std::string>* dropped = nullptr);

// Parses a legacy text completion request (/v1/completions: "prompt" as a string or a list of
// one string) as the chat request of one user message, with the same fields; refuses what a
// chat model cannot do with a prompt ("echo", "suffix", "best_of" > 1, "logprobs", several
// prompts) by name.
absl::Status ParseCompletionRequest(const std::string& body, v1::CompleteRequest* out,
                                    bool* stream, bool* include_usage, std::string* model,
                                    bool drop_unsupported = false,
                                    std::vector<std::string>* dropped = nullptr);

namespace http_codec {

using json = nlohmann::json;

// The one converter from a Status to an HTTP status code: 402 insufficient credits, 422 a
// policy no device meets, then by code (400, 401, 403, 404, 409, 429, 499, 501, 503, 504, 500).
int HttpStatusFor(const absl::Status& status);

// OpenAI's error type and code strings for an HTTP status, and its error object.
const char* ErrorType(int http);
const char* ErrorCode(int http);
json ErrorBody(int http, const std::string& message);
// An OpenAI error response. SDKs retry 409 and 5xx unless told not to: a request that was
// already served or that can never succeed as sent gets x-should-retry: false; 429 gets
// Retry-After.
HttpResponse ErrorResponse(int http, const std::string& message);
// From a Status; ABORTED (the same id running elsewhere) is a 409 worth retrying shortly.
HttpResponse ErrorResponse(const absl::Status& status);
// An error that keeps the headers already chosen for the response (x-request-id, ...).
HttpResponse ErrorResponse(HttpResponse base, const absl::Status& status);
HttpResponse JsonResponse(const json& body);

// The receipt every answer carries as its "loom" object: plan kind, sub-tasks and their
// devices, contributions, cost, settlement, compete and policy reports.
json LoomObject(const v1::CompleteResponse& r);
std::string FinishReason(const v1::CompleteResponse& r);  // "stop" when the device said none
// The answer as OpenAI's assistant message: its text (null when the model only called tools)
// and its tool calls.
json AssistantMessage(const std::string& output, const std::string& tool_calls_json);
// The tool calls as one streamed delta (each call whole, with its index).
json ToolCallsDelta(const std::string& tool_calls_json);
// Every choice of the answer (n > 1), or its one: index, output, finish_reason, tool calls.
std::vector<v1::Choice> Choices(const v1::CompleteResponse& r);
// A choice's "logprobs" object: {"content": [...]} when they were reported, else null.
json Logprobs(const v1::Choice& c);
json Usage(const v1::CompleteResponse& r);
// The stages of a request as a W3C Server-Timing header (milliseconds).
std::string ServerTiming(const v1::Timings& t);
// %XX escapes in a path segment (a request id holds ':' and '/', sent encoded) decoded; a
// malformed escape stays as it is.
std::string PercentDecode(absl::string_view in);
// "PLAN_KIND_COMPILED" with prefix "PLAN_KIND_" -> "compiled".
std::string Lower(const std::string& enum_name, absl::string_view prefix);

}  // namespace http_codec
}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_OPENAI_CODEC_H_
