// File: coordinator/front/openai_codec.cc
#include "coordinator/front/openai_codec.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/categories.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"
#include "common/status_macros.h"
#include "coordinator/mesh/selection_policy.h"
#include "ledger/ledger_rules.h"

namespace loom {

using json = nlohmann::json;

// ---- Requests ----

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

// Long on purpose: one pass over the request's fields, each checked and named in its own
// error; the per-field parsers it calls live in common/openai_wire.h.
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

namespace http_codec {

// ---- Errors ----

int HttpStatusFor(const absl::Status& status) {
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
  return ErrorResponse(HttpStatusFor(status), std::string(status.message()));
}

// An error that keeps the headers already chosen for the response (x-request-id, ...).
HttpResponse ErrorResponse(HttpResponse base, const absl::Status& status) {
  HttpResponse error = ErrorResponse(status);
  for (auto& [name, value] : error.headers) base.SetHeader(name, value);
  error.headers = std::move(base.headers);
  return error;
}

HttpResponse JsonResponse(const json& body) {
  HttpResponse res;
  res.body = DumpJson(body);
  return res;
}

// ---- Answers ----

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

}  // namespace http_codec
}  // namespace loom
