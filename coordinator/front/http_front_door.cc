#include "coordinator/front/http_front_door.h"

#include <algorithm>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/json_dump.h"
#include "common/status_macros.h"
#include "common/openai_wire.h"
#include "common/categories.h"
#include "common/ids.h"
#include "coordinator/front/console_assets.h"
#include "coordinator/front/embeddings_api.h"
#include "coordinator/front/responses_api.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

using json = nlohmann::json;

constexpr char kAutoModel[] = "loom-auto";

const char* ErrorType(int http) {
  switch (http) {
    case 400: case 404: case 405: case 409: case 413: case 422: case 431: return "invalid_request_error";
    case 401: return "authentication_error";
    case 402: return "insufficient_quota";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    default: return "server_error";
  }
}

// OpenAI's error `code` is a string (or null); SDKs switch on it.
const char* ErrorCode(int http) {
  switch (http) {
    case 400: return "invalid_request";
    case 401: return "invalid_api_key";
    case 402: return "insufficient_quota";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "request_already_served";
    case 422: return "policy_unsatisfiable";
    case 413: return "request_too_large";
    case 431: return "request_header_too_large";
    case 429: return "rate_limit_exceeded";
    case 499: return "cancelled";
    case 503: return "no_device_available";
    case 504: return "timeout";
    default: return "internal_error";
  }
}

json ErrorBody(int http, const std::string& message) {
  return json{{"error", {{"message", message}, {"type", ErrorType(http)},
                         {"param", nullptr}, {"code", ErrorCode(http)}}}};
}

// An OpenAI error response. SDKs retry 409 and 5xx unless told not to: a request that was
// already served or that can never succeed as sent must not be retried (nor charged) again.
HttpResponse ErrorResponse(int http, const std::string& message) {
  HttpResponse res;
  res.status = http;
  if (http == 409 || (http >= 400 && http < 500 && http != 429 && http != 408)) {
    res.SetHeader("x-should-retry", "false");
  }
  if (http == 429) res.SetHeader("Retry-After", "1");
  res.body = DumpJson(ErrorBody(http, message));
  return res;
}

HttpResponse ErrorResponse(const absl::Status& status) {
  if (absl::IsAborted(status)) {
    // The same request id is running (on another coordinator): worth retrying shortly, when
    // the retry gets the answer.
    HttpResponse res;
    res.status = 409;
    res.SetHeader("x-should-retry", "true");
    res.SetHeader("Retry-After", "1");
    res.body = DumpJson(json{{"error", {{"message", std::string(status.message())},
                                        {"type", ErrorType(409)},
                                        {"param", nullptr},
                                        {"code", "request_in_progress"}}}});
    return res;
  }
  return ErrorResponse(HttpFrontDoor::HttpStatusFor(status), std::string(status.message()));
}

// An error that keeps the headers already chosen for the response (x-request-id, ...).
HttpResponse ErrorResponse(HttpResponse base, const absl::Status& status) {
  HttpResponse error = ErrorResponse(status);
  for (auto& [name, value] : error.headers) base.SetHeader(name, value);
  error.headers = std::move(base.headers);
  return error;
}

// CORS for browser clients: an allowed Origin is echoed (or "*" when any is allowed), with the
// headers a page may read; a preflight (OPTIONS with Access-Control-Request-Method) also gets
// the methods and the request headers it asked for (SDKs send their own x-stainless-* ones).
void AddCorsHeaders(const std::vector<std::string>& allowed, const HttpRequest& req,
                    HttpResponse& res) {
  const std::string origin = req.Header("Origin");
  if (allowed.empty() || origin.empty()) return;
  const bool any = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  if (!any && std::find(allowed.begin(), allowed.end(), origin) == allowed.end()) return;
  res.SetHeader("Access-Control-Allow-Origin", any ? "*" : origin);
  if (!any) res.SetHeader("Vary", "Origin");
  res.SetHeader("Access-Control-Expose-Headers",
                "x-request-id, x-loom-overhead-ms, x-loom-request-id, x-loom-dropped-params, "
                "x-should-retry, retry-after");
  if (req.method == "OPTIONS") {
    res.SetHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const std::string asked = req.Header("Access-Control-Request-Headers");
    res.SetHeader("Access-Control-Allow-Headers",
                  asked.empty() ? "Authorization, Content-Type, X-Request-Id, Idempotency-Key" : asked);
    res.SetHeader("Access-Control-Max-Age", "600");
  }
}

// The route a request went to, as a metric label (raw paths would be unbounded).
std::string Endpoint(const HttpRequest& req) {
  if (req.method == "OPTIONS") return "preflight";
  for (const char* route : {"/v1/chat/completions", "/v1/responses", "/v1/completions",
                            "/v1/embeddings", "/v1/feedback", "/loom/v1/earnings",
                            "/loom/v1/affinities", "/healthz", "/metrics"}) {
    if (req.path == route) return route;
  }
  if (req.path == "/v1/models" || absl::StartsWith(req.path, "/v1/models/")) return "/v1/models";
  return "other";
}

HttpResponse JsonResponse(const json& body) {
  HttpResponse res;
  res.body = DumpJson(body);
  return res;
}

// A client's own id for the request: X-Request-Id, else Idempotency-Key (what the OpenAI SDKs
// and Stripe-style clients send so that a retry can be recognised). Empty when neither is set.
std::string ClientRequestId(const HttpRequest& req) {
  for (const char* header : {"X-Request-Id", "Idempotency-Key"}) {
    if (req.HasHeader(header)) return req.Header(header);
  }
  return "";
}

}  // namespace

namespace {

// An image part: {"type": "image_url", "image_url": {"url": "https://..." or
// "data:image/...;base64,...", "detail": "auto" | "low" | "high"}}.
absl::Status CheckImagePart(const json& part, const std::string& at) {
  if (!part.contains("image_url") || !part["image_url"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("'", at, ".image_url' must be an object with a url"));
  }
  const json& image = part["image_url"];
  if (!image.contains("url") || !image["url"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("'", at, ".image_url.url' must be a string"));
  }
  const std::string url = image["url"].get<std::string>();
  if (!absl::StartsWith(url, "https://") && !absl::StartsWith(url, "http://") &&
      !absl::StartsWith(url, "data:image/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", at, ".image_url.url' must be an http(s) URL or a data:image/... URL"));
  }
  if (image.contains("detail") && !image["detail"].is_null() &&
      (!image["detail"].is_string() ||
       (image["detail"] != "auto" && image["detail"] != "low" && image["detail"] != "high"))) {
    return absl::InvalidArgumentError(absl::StrCat("'", at, ".image_url.detail' must be auto, low or high"));
  }
  return absl::OkStatus();
}

// OpenAI request fields that Loom's devices cannot honour yet, each with whether this request
// uses it in a way that is honoured anyway (n: 1, response_format text, logprobs false, ...).
std::vector<std::pair<std::string, bool>> UnsupportedFields(const json& j) {
  std::vector<std::pair<std::string, bool>> out;
  auto present = [&](const char* field) { return j.contains(field) && !j[field].is_null(); };
  // The legacy function-calling fields (tools replaced them; SDKs send tools).
  if (present("functions")) out.emplace_back("functions", j["functions"].is_array() && j["functions"].empty());
  if (present("function_call")) out.emplace_back("function_call", j["function_call"] == "none");
  if (present("modalities")) {
    out.emplace_back("modalities", j["modalities"] == json::array({"text"}));
  }
  for (const char* field : {"audio", "prediction"}) {
    if (present(field)) out.emplace_back(field, false);
  }
  return out;
}

}  // namespace

// Parses an OpenAI chat completion request into a CompleteRequest. Every field is checked
// for its type (a wrong type is a 400 naming the field, never an exception).
absl::Status ParseCompletionRequest(const std::string& body, v1::CompleteRequest* out,
                                    bool* stream, bool* include_usage, std::string* model,
                                    bool drop_unsupported, std::vector<std::string>* dropped) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the body is not a JSON object (or not valid UTF-8)");
  }
  if (j.contains("messages")) {
    return absl::InvalidArgumentError("'messages' belongs to /v1/chat/completions; send 'prompt'");
  }
  json prompt = j.contains("prompt") ? j["prompt"] : json();
  if (prompt.is_array() && prompt.size() == 1) prompt = prompt[0];
  if (!prompt.is_string() || prompt.get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        "'prompt' must be a non-empty string (or a list of one; several prompts are not served)");
  }
  auto present = [&](const char* field) { return j.contains(field) && !j[field].is_null(); };
  const bool echo = present("echo") && j["echo"] != false;
  const bool best_of = present("best_of") && j["best_of"] != 1;
  for (const auto& [field, used] : {std::pair<const char*, bool>{"echo", echo},
                                    {"suffix", present("suffix")},
                                    {"best_of", best_of},
                                    {"n", present("n") && j["n"] != 1},
                                    {"logprobs", present("logprobs")}}) {
    if (!used) {
      j.erase(field);
      continue;
    }
    if (!drop_unsupported) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", field, "' is not supported on /v1/completions here"));
    }
    if (dropped) dropped->push_back(field);
    j.erase(field);
  }
  j.erase("prompt");
  j["messages"] = json::array({{{"role", "user"}, {"content", prompt}}});
  return ParseChatRequest(j.dump(), out, stream, include_usage, model, drop_unsupported, dropped);
}

absl::Status ParseChatRequest(const std::string& body, v1::CompleteRequest* out, bool* stream,
                              bool* include_usage, std::string* model, bool drop_unsupported,
                              std::vector<std::string>* dropped) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the body is not a JSON object (or not valid UTF-8)");
  }
  auto bad = [](absl::string_view field, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("'", field, "' must be ", what));
  };
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("'model' is required: loom-auto or a model on the mesh");
  }
  *model = j["model"].get<std::string>();
  if (*model != kAutoModel) out->set_model(*model);
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
    return bad("messages", "a non-empty array");
  }
  for (size_t i = 0; i < j["messages"].size(); ++i) {
    const json& m = j["messages"][i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return bad(absl::StrCat(at, ".role"), "a string");
    }
    const std::string role = m["role"].get<std::string>();
    v1::ChatMessage* msg = out->add_messages();
    // An assistant turn that called tools (sent back in the next request) may have no text.
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      const json& calls = m["tool_calls"];
      if (role != "assistant" || !calls.is_array()) {
        return bad(absl::StrCat(at, ".tool_calls"), "an array, on an assistant message");
      }
      for (size_t k = 0; k < calls.size(); ++k) {
        const json& c = calls[k];
        const std::string call_at = absl::StrCat(at, ".tool_calls[", k, "]");
        if (!c.is_object() || !c.contains("id") || !c["id"].is_string() || !c.contains("function") ||
            !c["function"].is_object() || !c["function"].contains("name") ||
            !c["function"]["name"].is_string() || !c["function"].contains("arguments") ||
            !c["function"]["arguments"].is_string()) {
          return bad(call_at, "{\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}");
        }
      }
      if (!calls.empty()) msg->set_tool_calls_json(DumpJson(calls));
    }
    if (role == "tool") {
      if (!m.contains("tool_call_id") || !m["tool_call_id"].is_string()) {
        return bad(absl::StrCat(at, ".tool_call_id"), "a string (the call this result answers)");
      }
      msg->set_tool_call_id(m["tool_call_id"].get<std::string>());
    }
    if (m.contains("name") && !m["name"].is_null()) {
      if (!m["name"].is_string()) return bad(absl::StrCat(at, ".name"), "a string");
      msg->set_name(m["name"].get<std::string>());
    }
    std::string content;
    const bool no_content = !m.contains("content") || m["content"].is_null();
    if (no_content && !msg->tool_calls_json().empty()) {
      // an assistant turn with only tool calls
    } else if (m.contains("content") && m["content"].is_string()) {
      content = m["content"].get<std::string>();
    } else if (m.contains("content") && m["content"].is_array()) {
      // The "parts" form: text parts are joined; image parts go as they are to a model that
      // takes them (vision); any other part is refused by name, since dropping it would
      // answer a different question than the one asked.
      bool images = false;
      for (size_t k = 0; k < m["content"].size(); ++k) {
        const json& part = m["content"][k];
        const std::string part_at = absl::StrCat(at, ".content[", k, "]");
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
          return bad(absl::StrCat(part_at, ".type"), "a string");
        }
        const std::string type = part["type"].get<std::string>();
        if (type == "image_url") {
          LOOM_RETURN_IF_ERROR(CheckImagePart(part, part_at));
          images = true;
          continue;
        }
        if (type != "text") {
          return absl::InvalidArgumentError(absl::StrCat(
              part_at, " is a '", type, "' part; devices here take text and image_url parts"));
        }
        if (!part.contains("text") || !part["text"].is_string()) {
          return bad(absl::StrCat(part_at, ".text"), "a string");
        }
        content += part["text"].get<std::string>();
      }
      if (images) msg->set_content_parts_json(DumpJson(m["content"]));
    } else {
      return bad(absl::StrCat(at, ".content"), "a string or an array of text parts");
    }
    msg->set_role(role);
    msg->set_content(content);
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (j.contains(key) && !j[key].is_null()) {
      if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0) {
        return bad(key, "a non-negative integer");
      }
      out->set_max_tokens(j[key].get<int64_t>());
    }
  }
  *stream = false;
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return bad("stream", "true or false");
    *stream = j["stream"].get<bool>();
  }
  *include_usage = false;
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& o = j["stream_options"];
    if (!o.is_object()) return bad("stream_options", "an object");
    if (o.contains("include_usage")) {
      if (!o["include_usage"].is_boolean()) return bad("stream_options.include_usage", "true or false");
      *include_usage = o["include_usage"].get<bool>();
    }
  }
  if (absl::Status s = ParseSampling(j, out->mutable_sampling()); !s.ok()) return s;
  if (absl::Status s = ParseStructure(j, out->mutable_structure()); !s.ok()) return s;
  if (j.contains("n") && !j["n"].is_null()) {
    if (!j["n"].is_number_integer() || j["n"].get<int64_t>() < 1 || j["n"].get<int64_t>() > kMaxChoices) {
      return bad("n", absl::StrCat("an integer from 1 to ", kMaxChoices));
    }
    if (j["n"].get<int64_t>() > 1) out->set_n(j["n"].get<int>());
  }
  // Fields whose loss would change the answer: refused by name (or, with --drop_params,
  // dropped and listed in x-loom-dropped-params), never dropped silently.
  for (const auto& [field, honoured] : UnsupportedFields(j)) {
    if (honoured) continue;
    if (!drop_unsupported) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", field, "' is not supported by the devices on this mesh yet; remove it, or ask "
          "the operator to start the coordinator with --drop_params to have it ignored"));
    }
    if (dropped) dropped->push_back(field);
  }
  return ParseLoomExtension(j, out);
}

namespace {

std::string Lower(const std::string& enum_name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(enum_name, prefix));
}

// The stages of a request as a W3C Server-Timing header (milliseconds; browsers' developer
// tools and the console show it): where the time went, without reading logs.
std::string ServerTiming(const v1::Timings& t) {
  std::string out;
  auto add = [&](const char* name, int64_t us) {
    if (us <= 0) return;
    absl::StrAppendFormat(&out, "%s%s;dur=%.3f", out.empty() ? "" : ", ", name, us / 1000.0);
  };
  add("queue", t.queued_us());
  add("analyze", t.analyze_us());
  add("reserve", t.reserve_us());
  add("decompose", t.decompose_us());
  add("device", t.device_wait_us());
  add("execute", t.execute_us());
  add("synthesize", t.synthesize_us());
  add("settle", t.settle_us());
  add("total", t.total_us());
  return out;
}

// %XX escapes in a path segment (a request id holds ':' and '/', sent encoded); a malformed
// escape stays as it is.
std::string PercentDecode(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    int value = 0;
    if (in[i] == '%' && i + 2 < in.size() && absl::ascii_isxdigit(in[i + 1]) &&
        absl::ascii_isxdigit(in[i + 2]) && absl::SimpleHexAtoi(in.substr(i + 1, 2), &value)) {
      out.push_back(static_cast<char>(value));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

json LoomObject(const v1::CompleteResponse& r) {
  json sub_tasks = json::array();
  for (const auto& t : r.plan().sub_tasks()) {
    json deps = json::array();
    for (const auto& d : t.depends_on()) deps.push_back(d);
    std::string device;
    for (const auto& res : r.results()) {
      if (res.sub_task_id() == t.id()) device = res.device_id();
    }
    sub_tasks.push_back({{"id", t.id()}, {"category", CategoryName(t.category())},
                         {"order_index", t.order_index()}, {"depends_on", deps}, {"device", device}});
  }
  json contributions = json::array();
  for (const auto& c : r.contributions()) {
    contributions.push_back({{"device", c.device_id()}, {"provider", c.provider_id()},
                             {"model", c.model()}, {"role", Lower(v1::ContributionRole_Name(c.role()), "CONTRIBUTION_ROLE_")},
                             {"tokens", c.token_count()}, {"weight", c.weight()},
                             {"credits_micro", c.credits_micro()}, {"in_answer", c.in_answer()}});
  }
  json out = {{"request_id", r.request_id()},
              {"plan_kind", Lower(v1::PlanKind_Name(r.plan().kind()), "PLAN_KIND_")},
              {"sub_tasks", sub_tasks},
              {"contributions", contributions},
              {"cost_micro", r.cost_micro()},
              {"settlement_id", r.settlement_id()},
              {"coordinator_overhead_us", r.coordinator_overhead_us()}};
  if (r.has_compete()) {
    out["compete"] = {{"winner", r.compete().winner_sub_task_id()}, {"method", r.compete().method()},
                      {"reason", r.compete().reason()}, {"payout_rule", r.compete().payout_rule()}};
    if (!r.compete().judge_scores().empty()) {
      out["compete"]["judge_scores"] = std::vector<double>(r.compete().judge_scores().begin(),
                                                           r.compete().judge_scores().end());
    }
  }
  if (r.has_policy()) {
    const v1::PolicyReport& p = r.policy();
    out["policy"] = {{"name", p.name()},
                     {"limits", std::vector<std::string>(p.limits().begin(), p.limits().end())},
                     {"applied", std::vector<std::string>(p.applied().begin(), p.applied().end())},
                     {"paid_micro", p.paid_micro()},
                     {"cheapest_micro", p.cheapest_micro()},
                     {"best_affinity_micro", p.best_affinity_micro()},
                     {"carbon_g_estimate", p.carbon_g()},
                     {"carbon_unknown_calls", p.carbon_unknown_calls()}};
  }
  return out;
}

std::string FinishReason(const v1::CompleteResponse& r) {
  return r.finish_reason().empty() ? "stop" : r.finish_reason();
}

// The answer as OpenAI's assistant message: its text (null when the model only called tools)
// and its tool calls.
json AssistantMessage(const std::string& output, const std::string& tool_calls_json) {
  json m = {{"role", "assistant"}, {"content", output}};
  if (!tool_calls_json.empty()) {
    m["tool_calls"] = json::parse(tool_calls_json, nullptr, false);
    if (output.empty()) m["content"] = nullptr;
  }
  return m;
}

// The tool calls as one streamed delta (each call whole, with its index).
json ToolCallsDelta(const std::string& tool_calls_json) {
  json calls = json::parse(tool_calls_json, nullptr, false);
  if (!calls.is_array()) return json::array();
  for (size_t i = 0; i < calls.size(); ++i) calls[i]["index"] = i;
  return calls;
}

// Every choice of the answer (n > 1), or its one, as response.choices or as the last chunks
// of a stream: index, output, finish_reason, tool calls.
std::vector<v1::Choice> Choices(const v1::CompleteResponse& r) {
  if (r.choices_size() > 1) return {r.choices().begin(), r.choices().end()};
  v1::Choice one;
  one.set_output(r.output());
  one.set_finish_reason(FinishReason(r));
  one.set_tool_calls_json(r.tool_calls_json());
  one.set_logprobs_json(r.logprobs_json());
  return {one};
}

// A choice's "logprobs" object: {"content": [...]} when they were reported, else null.
json Logprobs(const v1::Choice& c) {
  if (c.logprobs_json().empty()) return nullptr;
  json content = json::parse(c.logprobs_json(), nullptr, false);
  return content.is_array() ? json{{"content", content}, {"refusal", nullptr}} : json(nullptr);
}

json Usage(const v1::CompleteResponse& r) {
  return {{"prompt_tokens", r.usage().prompt_tokens()},
          {"completion_tokens", r.usage().completion_tokens()},
          {"total_tokens", r.usage().prompt_tokens() + r.usage().completion_tokens()}};
}

// Writes a streamed answer as Server-Sent Events as its text arrives: a role chunk first, then
// the text, then (Finish) a final chunk with the loom object, an optional usage chunk and
// [DONE]; a failure after text was sent is reported in-band. Headers go out with the first
// text, so a request that fails before any gets a plain HTTP error status.
class SseWriter {
 public:
  SseWriter(HttpExchange* exchange, HttpResponse head, std::string id, int64_t created,
            std::string model, int choices)
      : exchange_(exchange), head_(std::move(head)), id_(std::move(id)), created_(created),
        model_(std::move(model)), choices_(choices) {}

  bool started() const { return started_; }

  // Text of choice `index`. False once the client is gone (the request is then cancelled).
  bool Text(const std::string& text, int index = 0) {
    if (!Start()) return false;
    return Send(Chunk({{"content", text}}, nullptr, index));
  }

  void Finish(const absl::StatusOr<v1::CompleteResponse>& result, bool include_usage) {
    if (!Start()) return;
    if (!result.ok()) {
      // Text was already sent: report the failure in-band, as OpenAI-compatible servers do.
      const int http = HttpFrontDoor::HttpStatusFor(result.status());
      Send(ErrorBody(http, std::string(result.status().message())));
    } else {
      const std::vector<v1::Choice> choices = Choices(*result);
      for (size_t i = 0; i < choices.size(); ++i) {
        const v1::Choice& c = choices[i];
        const int index = static_cast<int>(i);
        if (!c.tool_calls_json().empty()) {
          Send(Chunk({{"tool_calls", ToolCallsDelta(c.tool_calls_json())}}, nullptr, index));
        }
        json last = Chunk(json::object(), c.finish_reason().empty() ? "stop" : c.finish_reason(), index);
        // The tokens' log probabilities, whole, with the choice's last chunk (clients append
        // each chunk's logprobs.content).
        last["choices"][0]["logprobs"] = Logprobs(c);
        if (i + 1 == choices.size()) last["loom"] = LoomObject(*result);
        Send(last);
      }
      if (include_usage) {
        Send({{"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_},
              {"model", model_}, {"choices", json::array()}, {"usage", Usage(*result)}});
      }
    }
    if (ok_) ok_ = exchange_->Write("data: [DONE]\n\n");
  }

 private:
  bool Start() {
    if (started_) return ok_;
    started_ = true;
    head_.content_type = "text/event-stream";
    head_.SetHeader("Cache-Control", "no-cache");
    ok_ = exchange_->StartStream(head_);
    // The opening role chunks leave with the first token (one write, not three).
    for (int i = 0; i < choices_ && ok_; ++i) {
      ok_ = exchange_->Queue(absl::StrCat(
          "data: ", DumpJson(Chunk({{"role", "assistant"}, {"content", ""}}, nullptr, i)), "\n\n"));
    }
    if (!ok_) exchange_->client_gone()->Cancel();
    return ok_;
  }

  json Chunk(const json& delta, const json& finish, int index = 0) const {
    return json{{"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_},
                {"model", model_},
                {"choices", {{{"index", index}, {"delta", delta}, {"finish_reason", finish}}}}};
  }

  bool Send(const json& chunk) {
    if (ok_) ok_ = exchange_->Write(absl::StrCat("data: ", DumpJson(chunk), "\n\n"));
    if (!ok_) exchange_->client_gone()->Cancel();  // the client went away: stop the work
    return ok_;
  }

  HttpExchange* const exchange_;
  HttpResponse head_;
  const std::string id_;
  const int64_t created_;
  const std::string model_;
  const int choices_;
  bool started_ = false;
  bool ok_ = true;
};

// A Server-Sent Events response that starts with its first event, so a request that fails
// before any text gets a plain HTTP error status (the Responses and Completions streams).
// Send is false once the client is gone, and then cancels the request.
class LazyEventStream {
 public:
  LazyEventStream(HttpExchange* exchange, HttpResponse head)
      : exchange_(exchange), head_(std::move(head)) {}

  bool started() const { return started_; }

  // `first` goes out ahead of the first event (a stream's opening event), "" for none.
  bool Send(const std::string& bytes, const std::string& first = "") {
    if (!started_) {
      started_ = true;
      head_.content_type = "text/event-stream";
      head_.SetHeader("Cache-Control", "no-cache");
      ok_ = exchange_->StartStream(head_);
      if (ok_ && !first.empty()) ok_ = exchange_->Queue(first);  // leaves with `bytes`
    }
    return Write(bytes);
  }

 private:
  bool Write(const std::string& bytes) {
    if (ok_) ok_ = exchange_->Write(bytes);
    if (!ok_) exchange_->client_gone()->Cancel();  // the client went away: stop the work
    return ok_;
  }

  HttpExchange* const exchange_;
  HttpResponse head_;
  bool started_ = false;
  bool ok_ = true;
};

}  // namespace

int HttpFrontDoor::HttpStatusFor(const absl::Status& status) {
  if (IsInsufficientCredits(status)) return 402;
  // No device meets the request's policy: as sent, it cannot be served (not retried).
  if (IsPolicyUnmet(status)) return 422;
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists: return 409;
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kFailedPrecondition: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

namespace {

HttpServerOptions ServerOptions(const HttpOptions& o) {
  HttpServerOptions s;
  s.max_connections = o.max_connections;
  s.max_connections_per_peer = o.max_connections_per_peer;
  s.keep_alive_timeout = o.keep_alive_timeout;
  s.keep_alive_max_requests = o.keep_alive_max_requests;
  s.request_read_timeout = o.read_timeout;
  s.write_timeout = o.write_timeout;
  s.max_body_bytes = o.max_body_bytes;
  s.tls_cert = o.tls_cert;
  s.tls_key = o.tls_key;
  return s;
}

}  // namespace

HttpFrontDoor::HttpFrontDoor(HttpOptions options, RequestRunner* runner,
                             DeviceRegistry* registry, const Authenticator* auth,
                             Admission* admission, Metrics* metrics,
                             EmbeddingRunner* embeddings, const ConsoleApi* console)
    : options_(options),
      runner_(runner),
      registry_(registry),
      auth_(auth),
      admission_(admission),
      metrics_(metrics),
      embeddings_(embeddings),
      console_(console),
      server_(ServerOptions(options_),
              [](int status, const std::string& message) { return ErrorResponse(status, message); },
              // Every response names its request, so a client can quote it; a client's own
              // id is echoed. Allowed browser origins get CORS headers.
              [this](const HttpRequest& req, HttpResponse& res) {
                AddCorsHeaders(options_.cors_origins, req, res);
                if (metrics_) metrics_->RecordHttpResponse(Endpoint(req), res.status);
                if (res.HasHeader("x-request-id")) return;
                const std::string id = ClientRequestId(req);
                res.SetHeader("x-request-id",
                              ValidRequestId(id).ok() && !id.empty() ? id : NewUuid());
              }) {
  Routes();
}

HttpFrontDoor::~HttpFrontDoor() { Stop(); }

absl::StatusOr<std::string> HttpFrontDoor::Start(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http_listen '", listen, "' needs host:port"));
  }
  const std::string host = listen.substr(0, colon);
  LOOM_ASSIGN_OR_RETURN(const int bound, server_.Start(host, port));
  return absl::StrCat(host, ":", bound);
}

void HttpFrontDoor::Stop() { server_.Stop(); }

void HttpFrontDoor::Routes() {
  server_.Handle(
      "GET", "/healthz",
      [this](HttpExchange&) {
        return JsonResponse(json{{"status", "ok"}, {"devices", registry_->Size()}});
      },
      {.on_io_thread = true});
  // The key is checked from the head, before a body is read (a body needs memory).
  HttpHeadFilter authenticate = [this](HttpRequest& req) -> std::optional<HttpResponse> {
    absl::StatusOr<std::string> client = auth_->ClientFor(req.Header("Authorization"));
    if (!client.ok()) return ErrorResponse(client.status());
    req.principal = *client;
    return std::nullopt;
  };
  if (!options_.cors_origins.empty()) {
    // Preflights carry no key: answered for any path, on the I/O threads; the finisher adds
    // the CORS headers when the origin is allowed (else the browser refuses the call).
    server_.Handle(
        "OPTIONS", "/*",
        [](HttpExchange&) {
          HttpResponse res;
          res.status = 204;
          res.content_type = "text/plain";
          return res;
        },
        {.on_io_thread = true});
  }
  server_.Handle(
      "GET", "/metrics",
      [this](HttpExchange&) {
        HttpResponse res;
        res.content_type = "text/plain; version=0.0.4";
        const v1::ListAffinitiesResponse affinities = runner_->Affinities();
        res.body = metrics_->Render(registry_->Snapshot(), admission_->running(),
                                    admission_->waiting(), &affinities);
        return res;
      },
      {.on_io_thread = true,
       .head_filter = options_.metrics_require_key ? authenticate : HttpHeadFilter()});
  auto models = [this](HttpExchange& ex) { return Models(ex); };
  server_.Handle("GET", "/v1/models", models, {.head_filter = authenticate});
  server_.Handle("GET", "/v1/models/*", models, {.head_filter = authenticate});
  server_.Handle("POST", "/v1/chat/completions", [this](HttpExchange& ex) { return Chat(ex); },
                 {.head_filter = authenticate});
  server_.Handle("POST", "/v1/responses", [this](HttpExchange& ex) { return Responses(ex); },
                 {.head_filter = authenticate});
  server_.Handle("POST", "/v1/completions", [this](HttpExchange& ex) { return Completions(ex); },
                 {.head_filter = authenticate});
  if (embeddings_ != nullptr) {
    server_.Handle("POST", "/v1/embeddings", [this](HttpExchange& ex) { return Embeddings(ex); },
                   {.head_filter = authenticate});
  }
  server_.Handle("POST", "/v1/feedback", [this](HttpExchange& ex) { return Feedback(ex); },
                 {.head_filter = authenticate});
  if (console_ != nullptr) ConsoleRoutes();
  server_.Handle(
      "GET", "/loom/v1/affinities",
      [this](HttpExchange&) {
        return JsonResponse(
            json{{"object", "list"}, {"data", ConsoleApi::AffinityRows(runner_->Affinities())}});
      },
      {.head_filter = authenticate});
  // A provider sees its own earnings with its own key (never another provider's).
  HttpHeadFilter authenticate_provider = [this](HttpRequest& req) -> std::optional<HttpResponse> {
    absl::StatusOr<std::string> provider = auth_->ProviderFor(req.Header("Authorization"));
    if (!provider.ok()) return ErrorResponse(provider.status());
    req.principal = *provider;
    return std::nullopt;
  };
  server_.Handle(
      "GET", "/loom/v1/earnings",
      [this](HttpExchange& ex) {
        absl::StatusOr<PayoutRow> row = auth_->EarningsOf(ex.request().principal);
        if (!row.ok()) return ErrorResponse(row.status());
        return JsonResponse(json{{"provider", row->provider_id},
                                 {"earned_micro", row->earned_micro},
                                 {"tokens", row->tokens},
                                 {"requests", row->requests},
                                 {"devices", row->devices},
                                 {"paid_out_micro", row->paid_out_micro},
                                 {"unpaid_micro", row->unpaid_micro}});
      },
      {.head_filter = authenticate_provider});
}

// The web console: its static files (embedded) and its JSON, every call authenticated by the
// console's own rule (an operator key, a client's or a provider's). The page is served to
// anyone (it holds no data) with a policy that lets it run only its own script.
void HttpFrontDoor::ConsoleRoutes() {
  server_.Handle(
      "GET", "/console",
      [](HttpExchange&) {
        HttpResponse res;
        res.status = 308;
        res.content_type = "text/plain";
        res.SetHeader("Location", "/console/");
        return res;
      },
      {.on_io_thread = true});
  HttpHeadFilter viewer = [this](HttpRequest& req) -> std::optional<HttpResponse> {
    absl::StatusOr<ConsoleApi::Viewer> v = console_->Authenticate(req.Header("Authorization"));
    if (!v.ok()) return ErrorResponse(v.status());
    req.principal = ConsoleApi::Encode(*v);
    return std::nullopt;
  };
  auto json_or_error = [](const absl::StatusOr<json>& j) {
    return j.ok() ? JsonResponse(*j) : ErrorResponse(j.status());
  };
  auto who = [](HttpExchange& ex) { return ConsoleApi::Decode(ex.request().principal); };
  server_.Handle("GET", "/console/api/whoami",
                 [this, who](HttpExchange& ex) { return JsonResponse(console_->WhoAmI(who(ex))); },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/mesh",
                 [this, who](HttpExchange& ex) { return JsonResponse(console_->Mesh(who(ex))); },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/requests",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Requests(who(ex)));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/requests/*",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Request(who(ex), PercentDecode(ex.request().suffix)));
                 },
                 {.head_filter = viewer});
  server_.Handle("POST", "/console/api/explain",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Explain(who(ex), ex.request().body));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/money",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Money(who(ex)));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/verify",
                 [this, who, json_or_error](HttpExchange& ex) {
                   return json_or_error(console_->Verify(who(ex)));
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/payouts.csv",
                 [this, who](HttpExchange& ex) {
                   absl::StatusOr<std::string> csv = console_->PayoutsCsv(who(ex));
                   if (!csv.ok()) return ErrorResponse(csv.status());
                   HttpResponse res;
                   res.content_type = "text/csv; charset=utf-8";
                   res.body = *std::move(csv);
                   res.SetHeader("Content-Disposition", "attachment; filename=\"loom-payouts.csv\"");
                   return res;
                 },
                 {.head_filter = viewer});
  server_.Handle("GET", "/console/api/affinities",
                 [this, who](HttpExchange& ex) { return JsonResponse(console_->Affinities(who(ex))); },
                 {.head_filter = viewer});  // After the API: a route's trailing * is matched in the order routes were added.
  server_.Handle(
      "GET", "/console/*",
      [](HttpExchange& ex) {
        const std::string name = ex.request().suffix.empty() ? "index.html" : ex.request().suffix;
        for (const ConsoleAsset& asset : ConsoleAssets()) {
          if (name != asset.path) continue;
          HttpResponse res;
          res.content_type = asset.content_type;
          res.body = std::string(asset.body);
          res.SetHeader("Content-Security-Policy",
                        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                        "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; "
                        "frame-ancestors 'none'; base-uri 'none'");
          res.SetHeader("X-Content-Type-Options", "nosniff");
          res.SetHeader("Referrer-Policy", "no-referrer");
          res.SetHeader("Cache-Control", "no-cache");
          return res;
        }
        return ErrorResponse(404, absl::StrCat("no console file '", name, "'"));
      },
      {.on_io_thread = true});
}

// POST /v1/feedback {"request_id": "...", "rating": "good"|"bad", "sub_task_id": "..."}: the
// id as the answer gave it (x-request-id), or the answer's own id ("chatcmpl-...", "cmpl-...",
// "resp_...").
HttpResponse HttpFrontDoor::Feedback(HttpExchange& exchange) {
  const json j = json::parse(exchange.request().body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return ErrorResponse(absl::InvalidArgumentError("the body is not a JSON object"));
  }
  auto text = [&](const char* field, bool required) -> absl::StatusOr<std::string> {
    if (!j.contains(field) || j[field].is_null()) {
      if (!required) return std::string();
      return absl::InvalidArgumentError(absl::StrCat("'", field, "' is required"));
    }
    if (!j[field].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("'", field, "' must be a string"));
    }
    return j[field].get<std::string>();
  };
  absl::StatusOr<std::string> id = text("request_id", true);
  absl::StatusOr<std::string> rating = text("rating", true);
  absl::StatusOr<std::string> sub_task = text("sub_task_id", false);
  for (const auto* field : {&id, &rating, &sub_task}) {
    if (!field->ok()) return ErrorResponse(field->status());
  }
  v1::FeedbackRequest request;
  request.set_request_id(*id);
  request.set_sub_task_id(*sub_task);
  if (*rating == "good") request.set_rating(v1::FEEDBACK_RATING_GOOD);
  if (*rating == "bad") request.set_rating(v1::FEEDBACK_RATING_BAD);
  if (request.rating() == v1::FEEDBACK_RATING_UNSPECIFIED) {
    return ErrorResponse(absl::InvalidArgumentError("'rating' must be \"good\" or \"bad\""));
  }
  const std::string& client = exchange.request().principal;
  absl::StatusOr<v1::FeedbackResponse> result = runner_->Feedback(client, request);
  for (absl::string_view prefix : {"chatcmpl-", "cmpl-", "resp_"}) {
    if (!absl::IsNotFound(result.status()) || !absl::StartsWith(*id, prefix)) continue;
    v1::FeedbackRequest bare = request;
    bare.set_request_id(id->substr(prefix.size()));
    result = runner_->Feedback(client, bare);
    if (absl::IsNotFound(result.status())) {
      result = absl::NotFoundError(absl::StrCat("no settled request ", *id, " of client ", client));
    }
  }
  if (!result.ok()) return ErrorResponse(result.status());
  json applied = json::array();
  for (const v1::OutcomeChange& c : result->applied()) {
    applied.push_back({{"model", c.model()},
                       {"category", CategoryName(c.category())},
                       {"good", c.good()},
                       {"bad", c.bad()}});
  }
  return JsonResponse(json{{"object", "loom.feedback"},
                           {"request_id", *id},
                           {"rating", *rating},
                           {"applied", std::move(applied)}});
}

HttpResponse HttpFrontDoor::Models(HttpExchange& exchange) {
  std::map<std::string, std::set<std::string>> models;  // name -> devices
  std::map<std::string, std::string> family;
  std::map<std::string, std::set<std::string>> capabilities;
  for (const auto& d : registry_->Snapshot()) {
    if (d.state() != v1::DEVICE_STATE_HEALTHY) continue;
    for (const auto& m : d.models()) {
      models[m.name()].insert(d.device_id());
      family[m.name()] = m.family();
      capabilities[m.name()].insert(m.capabilities().begin(), m.capabilities().end());
    }
  }
  std::vector<json> data;
  // Named policies are model names too: the analyzer decides the plan, the policy the devices.
  for (const auto& [name, policy] : runner_->policies().named()) {
    data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "loom"},
                    {"loom", {{"kind", "policy"},
                              {"description", absl::StrCat("the analyzer decides: passthrough, "
                                                           "compiled or compete; devices: ",
                                                           PolicyBook::Describe(policy))}}}});
  }
  for (const auto& [name, devices] : models) {
    const std::set<std::string>& caps = capabilities[name];
    data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "loom-mesh"},
                    {"loom", {{"family", family[name]}, {"devices", devices.size()},
                              {"kind", caps.count(kCapabilityEmbeddings) ? "embeddings" : "chat"},
                              {"capabilities", std::vector<std::string>(caps.begin(), caps.end())}}}});
  }
  const std::string& wanted = exchange.request().suffix;
  if (wanted.empty()) return JsonResponse(json{{"object", "list"}, {"data", data}});
  for (const json& m : data) {
    if (m["id"] == wanted) return JsonResponse(m);
  }
  return ErrorResponse(404, absl::StrCat("the model '", wanted, "' is not served on this mesh now"));
}

void HttpFrontDoor::DropUnservedStructure(v1::CompleteRequest* request,
                                          std::vector<std::string>* dropped) const {
  std::set<std::string> served;
  for (const auto& d : registry_->Snapshot()) {
    for (const auto& m : d.models()) served.insert(m.capabilities().begin(), m.capabilities().end());
  }
  v1::Structure* s = request->mutable_structure();
  if (!served.count(kCapabilityTools) && !s->tools_json().empty()) {
    s->clear_tools_json();
    s->clear_tool_choice_json();
    s->clear_parallel_tool_calls();
    dropped->push_back("tools");
  }
  if (!served.count(kCapabilityJsonSchema) && !s->response_format_json().empty()) {
    s->clear_response_format_json();
    dropped->push_back("response_format");
  }
}

absl::Status HttpFrontDoor::Identify(const HttpRequest& req, v1::CompleteRequest* request,
                                     HttpResponse* res) const {
  request->set_client_id(req.principal);
  if (request->request_id().empty()) request->set_request_id(ClientRequestId(req));
  LOOM_RETURN_IF_ERROR(ValidRequestId(request->request_id()));
  if (request->request_id().empty()) {
    request->set_request_id(NewUuid());
    request->set_request_id_assigned(true);
  }
  res->SetHeader("x-request-id", request->request_id());
  return absl::OkStatus();
}

HttpFrontDoor::Admitted HttpFrontDoor::Admit(HttpExchange& exchange, v1::CompleteRequest* request,
                                             const std::vector<std::string>& dropped) {
  Admitted a;
  if (!dropped.empty()) a.res.SetHeader("x-loom-dropped-params", absl::StrJoin(dropped, ","));
  if (absl::Status s = Identify(exchange.request(), request, &a.res); !s.ok()) {
    a.refused = ErrorResponse(s);
    return a;
  }
  a.deadline = runner_->clock()->Now() + options_.request_timeout;
  // The client leaving (the server sees the connection close) cancels the request.
  a.cancel = exchange.client_gone();
  absl::StatusOr<Admission::Ticket> ticket =
      admission_->Acquire(request->client_id(), a.deadline, a.cancel);
  if (!ticket.ok()) {
    a.refused = ErrorResponse(std::move(a.res), ticket.status());
    return a;
  }
  a.ticket.emplace(*std::move(ticket));
  return a;
}

HttpResponse HttpFrontDoor::Responses(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  const absl::Time arrived = runner_->clock()->Now();
  ResponsesRequest parsed;
  const ItemResolver resolve = [&](const std::string& item_id) {
    return response_items_.Get(req.principal, item_id, runner_->clock()->Now());
  };
  if (absl::Status s = ParseResponsesRequest(req.body, options_.drop_params, &parsed, resolve);
      !s.ok()) {
    return ErrorResponse(s);
  }
  v1::CompleteRequest& request = parsed.request;
  Admitted admitted = Admit(exchange, &request, parsed.dropped);
  if (admitted.refused) return *std::move(admitted.refused);
  HttpResponse& res = admitted.res;
  const absl::Time deadline = admitted.deadline;
  Cancellation* cancel = admitted.cancel;
  const int64_t created = absl::ToUnixSeconds(absl::Now());
  const std::string id = absl::StrCat("resp_", request.request_id());

  if (!parsed.stream) {
    absl::StatusOr<v1::CompleteResponse> r = runner_->Run(request, deadline, nullptr, cancel, arrived);
    if (!r.ok()) return ErrorResponse(std::move(res), r.status());
    json out = ResponseJson(id, created, parsed.model,
                            FinishReason(*r) == "length" ? "incomplete" : "completed", r->output(),
                            r->usage().prompt_tokens(), r->usage().completion_tokens(),
                            r->tool_calls_json());
    response_items_.Put(req.principal, out, runner_->clock()->Now());
    out["loom"] = LoomObject(*r);
    res.SetHeader("X-Loom-Overhead-Ms",
                  absl::StrFormat("%.3f", r->coordinator_overhead_us() / 1000.0));
    if (r->has_timings()) res.SetHeader("Server-Timing", ServerTiming(r->timings()));
    res.body = DumpJson(out);
    return res;
  }

  ResponsesStream events(id, created, parsed.model);
  LazyEventStream stream(&exchange, res);
  absl::StatusOr<v1::CompleteResponse> r = runner_->Run(
      request, deadline,
      [&](const v1::CompleteEvent& e) {
        if (e.has_output() && e.output().answer()) {
          stream.Send(events.Delta(e.output().text()), events.Start());
        }
      },
      cancel, arrived);
  if (!r.ok() && !stream.started()) return ErrorResponse(std::move(res), r.status());
  if (!r.ok()) {
    stream.Send(events.Fail(ErrorCode(HttpStatusFor(r.status())), std::string(r.status().message())),
                events.Start());
  } else {
    stream.Send(events.Finish(FinishReason(*r), r->usage().prompt_tokens(),
                              r->usage().completion_tokens(), LoomObject(*r), r->tool_calls_json()),
                events.Start());
    response_items_.Put(req.principal, events.completed(), runner_->clock()->Now());
  }
  return HttpResponse{};
}

HttpResponse HttpFrontDoor::Chat(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  const absl::Time arrived = runner_->clock()->Now();  // parsing counts as overhead too
  v1::CompleteRequest request;
  bool stream = false, include_usage = false;
  std::string model;
  std::vector<std::string> dropped;
  if (absl::Status s = ParseChatRequest(req.body, &request, &stream, &include_usage, &model,
                                        options_.drop_params, &dropped);
      !s.ok()) {
    return ErrorResponse(s);
  }
  if (options_.drop_params) DropUnservedStructure(&request, &dropped);
  Admitted admitted = Admit(exchange, &request, dropped);
  if (admitted.refused) return *std::move(admitted.refused);
  HttpResponse& res = admitted.res;
  const absl::Time deadline = admitted.deadline;
  Cancellation* cancel = admitted.cancel;
  const int64_t created = absl::ToUnixSeconds(absl::Now());

  if (!stream) {
    absl::StatusOr<v1::CompleteResponse> r = runner_->Run(request, deadline, nullptr, cancel, arrived);
    if (!r.ok()) return ErrorResponse(std::move(res), r.status());
    json out = {{"id", absl::StrCat("chatcmpl-", r->request_id())},
                {"object", "chat.completion"},
                {"created", created},
                {"model", model},
                {"choices", json::array()},
                {"usage", Usage(*r)},
                {"loom", LoomObject(*r)}};
    const std::vector<v1::Choice> choices = Choices(*r);
    for (size_t i = 0; i < choices.size(); ++i) {
      out["choices"].push_back({{"index", i},
                                {"message", AssistantMessage(choices[i].output(), choices[i].tool_calls_json())},
                                {"logprobs", Logprobs(choices[i])},
                                {"finish_reason", choices[i].finish_reason().empty() ? "stop" : choices[i].finish_reason()}});
    }
    res.SetHeader("X-Loom-Overhead-Ms",
                  absl::StrFormat("%.3f", r->coordinator_overhead_us() / 1000.0));
    if (r->has_timings()) res.SetHeader("Server-Timing", ServerTiming(r->timings()));
    res.SetHeader("X-Loom-Request-Id", r->request_id());
    if (r->replayed()) res.SetHeader("Idempotent-Replayed", "true");
    res.body = DumpJson(out);
    return res;
  }

  // Streamed: the request runs on this thread and its answer text is written to the client
  // as the devices produce it (the runner calls the sink one event at a time).
  SseWriter writer(&exchange, res, absl::StrCat("chatcmpl-", request.request_id()), created, model,
                   std::max(1, request.n()));
  // With n > 1 each choice's text carries its passthrough's sub-task id, in the plan's order.
  std::map<std::string, int> choice_of;
  absl::StatusOr<v1::CompleteResponse> r = runner_->Run(
      request, deadline,
      [&](const v1::CompleteEvent& e) {
        if (e.has_plan()) {
          for (int i = 0; i < e.plan().sub_tasks_size(); ++i) choice_of[e.plan().sub_tasks(i).id()] = i;
        }
        if (e.has_output() && e.output().answer()) {
          auto it = choice_of.find(e.output().sub_task_id());
          writer.Text(e.output().text(), request.n() > 1 && it != choice_of.end() ? it->second : 0);
        }
      },
      cancel, arrived);
  if (!r.ok() && !writer.started()) return ErrorResponse(std::move(res), r.status());
  writer.Finish(r, include_usage);
  return HttpResponse{};
}

HttpResponse HttpFrontDoor::Embeddings(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  EmbeddingsCall call;
  if (absl::Status s = ParseEmbeddingsRequest(req.body, &call); !s.ok()) return ErrorResponse(s);
  v1::CompleteRequest who;  // the same identity, id and admission rules as completions
  Admitted admitted = Admit(exchange, &who, {});
  if (admitted.refused) return *std::move(admitted.refused);
  HttpResponse& res = admitted.res;
  const absl::Time deadline = admitted.deadline;
  const std::string account = ClientAccount(who.client_id());
  if (metrics_) metrics_->RecordModel(call.model);
  absl::StatusOr<EmbeddingResult> r = embeddings_->Run(
      {.client_account = account,
       .request_id = who.request_id_assigned() ? who.request_id()
                                               : ScopedRequestId(account, who.request_id()),
       .model = call.model,
       .input = call.input,
       .dimensions = call.dimensions,
       .deadline = deadline},
      admitted.cancel);
  if (!r.ok()) return ErrorResponse(std::move(res), r.status());
  json out = EmbeddingsJson(call, r->response, r->tokens);
  out["loom"] = {{"request_id", who.request_id()}, {"cost_micro", r->cost_micro},
                 {"device_id", r->device_id}, {"attempts", r->attempts}};
  res.body = DumpJson(out);
  return res;
}

HttpResponse HttpFrontDoor::Completions(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  const absl::Time arrived = runner_->clock()->Now();
  v1::CompleteRequest request;
  bool stream = false, include_usage = false;
  std::string model;
  std::vector<std::string> dropped;
  if (absl::Status s = ParseCompletionRequest(req.body, &request, &stream, &include_usage, &model,
                                              options_.drop_params, &dropped);
      !s.ok()) {
    return ErrorResponse(s);
  }
  Admitted admitted = Admit(exchange, &request, dropped);
  if (admitted.refused) return *std::move(admitted.refused);
  HttpResponse& res = admitted.res;
  const absl::Time deadline = admitted.deadline;
  Cancellation* cancel = admitted.cancel;
  const int64_t created = absl::ToUnixSeconds(absl::Now());
  const std::string id = absl::StrCat("cmpl-", request.request_id());
  auto choice = [](const std::string& text, const json& finish) {
    return json::array({{{"text", text}, {"index", 0}, {"logprobs", nullptr},
                         {"finish_reason", finish}}});
  };
  auto object = [&](json choices) {
    return json{{"id", id}, {"object", "text_completion"}, {"created", created},
                {"model", model}, {"choices", std::move(choices)}};
  };

  if (!stream) {
    absl::StatusOr<v1::CompleteResponse> r = runner_->Run(request, deadline, nullptr, cancel, arrived);
    if (!r.ok()) return ErrorResponse(std::move(res), r.status());
    json out = object(choice(r->output(), FinishReason(*r)));
    out["usage"] = Usage(*r);
    out["loom"] = LoomObject(*r);
    if (r->replayed()) res.SetHeader("Idempotent-Replayed", "true");
    res.body = DumpJson(out);
    return res;
  }

  LazyEventStream events(&exchange, res);
  auto send = [&events](const json& chunk) {
    return events.Send(absl::StrCat("data: ", DumpJson(chunk), "\n\n"));
  };
  absl::StatusOr<v1::CompleteResponse> r = runner_->Run(
      request, deadline,
      [&](const v1::CompleteEvent& e) {
        if (e.has_output() && e.output().answer()) send(object(choice(e.output().text(), nullptr)));
      },
      cancel, arrived);
  if (!r.ok() && !events.started()) return ErrorResponse(std::move(res), r.status());
  bool ok;
  if (!r.ok()) {
    ok = send(ErrorBody(HttpStatusFor(r.status()), std::string(r.status().message())));
  } else {
    json last = object(choice("", FinishReason(*r)));
    if (include_usage) last["usage"] = Usage(*r);
    last["loom"] = LoomObject(*r);
    ok = send(last);
  }
  if (ok) events.Send("data: [DONE]\n\n");
  return HttpResponse{};
}

}  // namespace loom
