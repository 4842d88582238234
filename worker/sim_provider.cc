#include "worker/sim_provider.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "common/json_dump.h"
#include "common/tokens.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

constexpr const char* kVocabulary[] = {
    "the",      "model",   "device",    "answer",  "token",    "stream",  "graph",   "task",
    "result",   "mesh",    "request",   "value",   "function", "memory",  "type",    "error",
    "handling", "compile", "parallel",  "order",   "depends",  "output",  "context", "step",
    "first",    "then",    "therefore", "because", "example",  "summary", "data",    "system"};

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string LastUserMessage(const GenerateRequest& request) {
  for (auto it = request.messages.rbegin(); it != request.messages.rend(); ++it) {
    if (it->role() == "user") return it->content();
  }
  return request.messages.empty() ? "" : request.messages.back().content();
}

using json = nlohmann::json;

// An example instance of a JSON Schema: what a model honouring the schema could return.
json Example(const json& schema, const json& root, const std::string& name, int depth) {
  if (depth > 8 || !schema.is_object()) return nullptr;
  if (schema.contains("$ref") && schema["$ref"].is_string()) {
    const std::string ref = schema["$ref"].get<std::string>();
    for (const char* prefix : {"#/$defs/", "#/definitions/"}) {
      const std::string key = std::string(prefix).substr(2, std::string(prefix).size() - 3);
      if (absl::StartsWith(ref, prefix) && root.contains(key) && root[key].is_object()) {
        const std::string target = ref.substr(std::string(prefix).size());
        if (root[key].contains(target)) return Example(root[key][target], root, name, depth + 1);
      }
    }
    if (ref == "#") return Example(root, root, name, depth + 1);
    return nullptr;
  }
  if (schema.contains("const")) return schema["const"];
  if (schema.contains("enum") && schema["enum"].is_array() && !schema["enum"].empty()) {
    return schema["enum"][0];
  }
  for (const char* any : {"anyOf", "oneOf", "allOf"}) {
    if (schema.contains(any) && schema[any].is_array() && !schema[any].empty()) {
      for (const json& option : schema[any]) {  // the first option that is not just null
        if (option.value("type", "") != "null") return Example(option, root, name, depth + 1);
      }
      return nullptr;
    }
  }
  std::string type = "object";
  if (schema.contains("type") && schema["type"].is_string()) {
    type = schema["type"].get<std::string>();
  } else if (schema.contains("type") && schema["type"].is_array()) {
    for (const json& t : schema["type"]) {
      if (t.is_string() && t != "null") {
        type = t.get<std::string>();
        break;
      }
    }
  } else if (!schema.contains("properties")) {
    type = "string";
  }
  if (type == "object") {
    json out = json::object();
    if (!schema.contains("properties") || !schema["properties"].is_object()) return out;
    const bool all = !schema.contains("required") || !schema["required"].is_array();
    for (const auto& [key, property] : schema["properties"].items()) {
      bool wanted = all;
      if (!all) {
        for (const json& r : schema["required"]) wanted |= r == key;
      }
      if (wanted) out[key] = Example(property, root, key, depth + 1);
    }
    return out;
  }
  if (type == "array") {
    json out = json::array();
    const int64_t n = std::clamp<int64_t>(schema.value("minItems", int64_t{1}), 1, 3);
    const json items = schema.contains("items") ? schema["items"] : json::object();
    for (int64_t i = 0; i < n; ++i) out.push_back(Example(items, root, name, depth + 1));
    return out;
  }
  if (type == "integer") {
    return schema.contains("minimum") && schema["minimum"].is_number() ? schema["minimum"] : json(1);
  }
  if (type == "number") {
    return schema.contains("minimum") && schema["minimum"].is_number() ? schema["minimum"] : json(1.5);
  }
  if (type == "boolean") return true;
  if (type == "null") return nullptr;
  const std::string format = schema.value("format", "");
  if (format == "date") return "2026-01-01";
  if (format == "date-time") return "2026-01-01T00:00:00Z";
  if (format == "email") return "user@example.com";
  if (format == "uri") return "https://example.com";
  std::string text = absl::StrCat("example ", name.empty() ? "text" : name);
  const int64_t min_length = schema.value("minLength", int64_t{0});
  if (static_cast<int64_t>(text.size()) < min_length) text.append(min_length - text.size(), 'x');
  return text;
}

}  // namespace

std::string SimProvider::ToolCalls(const GenerateRequest& request) const {
  const v1::Structure& s = request.structure;
  if (s.tools_json().empty()) return "";
  if (!request.messages.empty() && request.messages.back().role() == "tool") return "";
  const json tools = json::parse(s.tools_json(), nullptr, false);
  const json choice = s.tool_choice_json().empty() ? json("auto")
                                                   : json::parse(s.tool_choice_json(), nullptr, false);
  if (!tools.is_array() || tools.empty() || choice == "none") return "";
  const json* chosen = nullptr;
  if (choice.is_object()) {
    const std::string wanted = choice["function"].value("name", "");
    for (const json& t : tools) {
      if (t["function"].value("name", "") == wanted) chosen = &t;
    }
  } else {
    const std::string prompt = absl::AsciiStrToLower(LastUserMessage(request));
    for (const json& t : tools) {
      const std::string name = absl::AsciiStrToLower(t["function"].value("name", ""));
      if (absl::StrContains(prompt, name) ||
          absl::StrContains(prompt, absl::StrReplaceAll(name, {{"_", " "}}))) {
        chosen = &t;
        break;
      }
    }
    if (chosen == nullptr && choice == "required") chosen = &tools[0];
  }
  if (chosen == nullptr) return "";
  const json& function = (*chosen)["function"];
  const json parameters = function.contains("parameters") ? function["parameters"] : json::object();
  json arguments = Example(parameters, parameters, "", 0);
  if (!arguments.is_object()) arguments = json::object();
  const std::string name = function.value("name", "");
  const json calls = json::array(
      {{{"id", absl::StrCat("call_", absl::Hex(Fnv1a(LastUserMessage(request) + name)))},
        {"type", "function"},
        {"function", {{"name", name}, {"arguments", DumpJson(arguments)}}}}});
  return DumpJson(calls);
}

SimProvider::SimProvider(SimProviderOptions options)
    : options_(std::move(options)), clock_(options_.clock ? options_.clock : Clock::Real()) {
  if (!options_.exit_process) options_.exit_process = [] { std::_Exit(75); };
}

namespace {

// Cuts `out` before the earliest of `stops`; true when one was found.
bool CutAtStop(const google::protobuf::RepeatedPtrField<std::string>& stops,
               std::vector<std::string>* out) {
  const std::string joined = absl::StrJoin(*out, "");
  size_t cut = std::string::npos;
  for (const std::string& stop : stops) {
    if (!stop.empty()) cut = std::min(cut, joined.find(stop));
  }
  if (cut == std::string::npos) return false;
  std::vector<std::string> kept;
  size_t at = 0;
  for (std::string& p : *out) {
    if (at + p.size() > cut) {
      if (cut > at) kept.push_back(p.substr(0, cut - at));
      break;
    }
    at += p.size();
    kept.push_back(std::move(p));
  }
  *out = std::move(kept);
  return true;
}

// The answer as JSON pieces when the request asks for json_schema or json_object output: an
// example of the schema, or {"answer": text}.
std::optional<std::vector<std::string>> AsJson(const v1::Structure& structure,
                                               const std::vector<std::string>& out) {
  const json format = structure.response_format_json().empty()
                          ? json(nullptr)
                          : json::parse(structure.response_format_json(), nullptr, false);
  if (!format.is_object() || (format.value("type", "") != "json_schema" &&
                              format.value("type", "") != "json_object")) {
    return std::nullopt;
  }
  const std::string text = absl::StrJoin(out, "");
  json value;
  if (format["type"] == "json_schema") {
    const json schema = format["json_schema"]["schema"];
    value = Example(schema, schema, "", 0);
  } else {
    value = {{"answer", std::string(absl::StripLeadingAsciiWhitespace(text))}};
  }
  const std::string dumped = DumpJson(value);
  std::vector<std::string> json_pieces;
  for (size_t at = 0; at < dumped.size();) {
    const size_t n = Utf8PrefixLength(absl::string_view(dumped).substr(at), 16);
    json_pieces.push_back(dumped.substr(at, n > 0 ? n : dumped.size() - at));
    at += n > 0 ? n : dumped.size() - at;
  }
  return json_pieces;
}

int CountImages(const GenerateRequest& request) {
  int images = 0;
  for (const auto& m : request.messages) {
    if (m.content_parts_json().empty()) continue;
    nlohmann::json parts = nlohmann::json::parse(m.content_parts_json(), nullptr, false);
    if (!parts.is_array()) continue;
    for (const auto& p : parts) images += p.is_object() && p.value("type", "") == "image_url";
  }
  return images;
}

}  // namespace

std::vector<std::string> SimProvider::AnswerPieces(const GenerateRequest& request,
                                                   std::string* finish_reason) const {
  int64_t target = options_.backend.output_tokens() > 0 ? options_.backend.output_tokens()
                                                        : kDefaultOutputTokens;
  *finish_reason = "stop";
  // Continuing an unfinished answer (the conversation ends with the assistant's own text, as
  // Loom sends when another device failed mid-answer): the rest of an answer of the usual
  // length, in the same deterministic vocabulary, with no new header.
  if (!request.messages.empty() && request.messages.back().role() == "assistant") {
    const std::string& unfinished = request.messages.back().content();
    target = std::max<int64_t>(1, target - CountTokens(unfinished));
    if (request.max_tokens > 0 && request.max_tokens < target) {
      target = request.max_tokens;
      *finish_reason = "length";
    }
    std::vector<std::string> rest;
    uint64_t h = Fnv1a(unfinished) ^ Fnv1a(options_.model);
    for (int64_t i = 0; i < target; ++i) {
      h = h * 6364136223846793005ULL + 1442695040888963407ULL;
      rest.push_back(absl::StrCat(" ", kVocabulary[(h >> 33) % std::size(kVocabulary)]));
    }
    return rest;
  }
  if (request.max_tokens > 0 && request.max_tokens < target) {
    target = request.max_tokens;
    *finish_reason = "length";  // cut by the client's limit, as a real model would be
  }

  std::vector<std::string> pieces = {" [simulated]", absl::StrCat(" ", options_.model),
                                     " on", absl::StrCat(" ", options_.device_id), " re:"};
  if (!request.messages.empty() && request.messages.back().role() == "tool") {
    // The turn after a tool call: the answer starts with what the tool returned.
    pieces = {" [simulated]", " the tool returned:",
              absl::StrCat(" ", TruncateUtf8(request.messages.back().content(), 200, "..."))};
  }
  // Image parts: the simulated device says how many it was shown (it does not look at them).
  const int images = CountImages(request);
  if (images > 0) pieces.push_back(absl::StrCat(" [", images, images == 1 ? " image]" : " images]"));
  const std::string prompt = LastUserMessage(request);
  int echoed = 0;
  for (absl::string_view word : absl::StrSplit(prompt, absl::ByAnyChar(" \n\t"), absl::SkipEmpty())) {
    if (++echoed > 8) break;
    pieces.push_back(absl::StrCat(" ", word));
  }
  pieces.push_back(" --");
  int64_t total = 0;
  for (const auto& p : pieces) total += CountTokens(p);
  uint64_t h = Fnv1a(prompt) ^ Fnv1a(options_.model);
  while (total < target) {
    h = h * 6364136223846793005ULL + 1442695040888963407ULL;
    pieces.push_back(absl::StrCat(" ", kVocabulary[(h >> 33) % std::size(kVocabulary)]));
    total += 1;  // every vocabulary word is one token
  }
  // Trim from the end so that exactly `target` tokens or fewer remain.
  int64_t count = 0;
  std::vector<std::string> out;
  for (auto& p : pieces) {
    int64_t t = CountTokens(p);
    if (count + t > target) break;
    count += t;
    out.push_back(std::move(p));
  }
  // Honour stop sequences as a real server does: the answer ends before the earliest one.
  if (CutAtStop(request.sampling.stop(), &out)) *finish_reason = "stop";
  // JSON output: valid whatever the length (a model constrained by a grammar closes it).
  if (std::optional<std::vector<std::string>> as_json = AsJson(request.structure, out)) {
    *finish_reason = "stop";
    return *std::move(as_json);
  }
  return out;
}

absl::StatusOr<v1::EmbedResponse> SimProvider::Embed(const std::vector<std::string>& input,
                                                     int dimensions, absl::Time deadline,
                                                     const Cancellation& cancel) {
  const v1::SimBackend& b = options_.backend;
  if (b.fault().kind() == v1::SimFault::KIND_FAIL) {
    return absl::UnavailableError("simulated fault: embeddings failed");
  }
  if (b.time_to_first_token_ms() > 0) {
    const absl::Duration d = absl::Milliseconds(b.time_to_first_token_ms());
    if (cancel.WaitUntil(std::min(clock_->Now() + d, deadline), *clock_)) {
      return absl::CancelledError("cancelled");
    }
    if (clock_->Now() > deadline) {
      return absl::DeadlineExceededError("simulated device: deadline exceeded");
    }
  }
  const int dims = dimensions > 0 ? dimensions : 256;
  v1::EmbedResponse out;
  int64_t tokens = 0;
  for (const std::string& text : input) {
    tokens += CountTokens(text);
    std::vector<double> v(dims, 0.0);
    auto add_word = [&](const std::string& word) {
      uint64_t h = 1469598103934665603ULL;  // FNV-1a
      for (unsigned char c : word) h = (h ^ c) * 1099511628211ULL;
      v[h % dims] += (h >> 63) ? 1.0 : -1.0;
    };
    std::string word;
    for (unsigned char c : text) {
      if (absl::ascii_isalnum(c) || c >= 0x80) {
        word += static_cast<char>(absl::ascii_tolower(c));
      } else if (!word.empty()) {
        add_word(word);
        word.clear();
      }
    }
    if (!word.empty()) add_word(word);
    double norm = 0;
    for (double x : v) norm += x * x;
    norm = norm > 0 ? std::sqrt(norm) : 1;
    v1::Embedding* e = out.add_data();
    for (double x : v) e->add_values(static_cast<float>(x / norm));
  }
  out.mutable_usage()->set_prompt_tokens(tokens);
  return out;
}

namespace {

// Simulated: one entry per piece, a deterministic log probability, and as many alternatives
// as asked (the piece itself first).
nlohmann::json SimulatedLogprob(const std::string& piece, int top_logprobs) {
  const double lp = -0.01 * static_cast<double>(Fnv1a(piece) % 200);
  nlohmann::json top = nlohmann::json::array();
  for (int k = 0; k < top_logprobs; ++k) {
    top.push_back({{"token", k == 0 ? piece : absl::StrCat(piece, "~", k)},
                   {"logprob", lp - k},
                   {"bytes", nullptr}});
  }
  return {{"token", piece}, {"logprob", lp}, {"bytes", nullptr}, {"top_logprobs", top}};
}

}  // namespace

// The configured fault, once `emitted` tokens are out.
absl::Status SimProvider::InjectFault(int64_t emitted, absl::Time deadline,
                                      const Cancellation& cancel) const {
  switch (options_.backend.fault().kind()) {
    case v1::SimFault::KIND_FAIL:
      return absl::UnavailableError(
          absl::StrCat("simulated fault: failed after ", emitted, " tokens"));
    case v1::SimFault::KIND_HANG:
      if (cancel.WaitUntil(deadline, *clock_)) return absl::CancelledError("cancelled");
      return absl::DeadlineExceededError(
          absl::StrCat("simulated fault: hung after ", emitted, " tokens"));
    case v1::SimFault::KIND_EXIT:
      options_.exit_process();
      return absl::InternalError("simulated fault: exit");  // reached only in tests
    default:
      return absl::OkStatus();
  }
}

absl::StatusOr<v1::InferChunk> SimProvider::Generate(const GenerateRequest& request,
                                                const TokenSink& sink,
                                                const Cancellation& cancel) {
  if (request.messages.empty()) return absl::InvalidArgumentError("no messages");
  const v1::SimBackend& b = options_.backend;
  const v1::SimFault& fault = b.fault();

  // Waits `d` unless cancelled or past the deadline first.
  auto wait = [&](absl::Duration d) -> absl::Status {
    const absl::Time until = clock_->Now() + d;
    const bool past_deadline = request.deadline < until;
    if (cancel.WaitUntil(past_deadline ? request.deadline : until, *clock_)) {
      return absl::CancelledError("cancelled");
    }
    if (past_deadline) return absl::DeadlineExceededError("simulated device: deadline exceeded");
    return absl::OkStatus();
  };

  v1::Usage usage;
  for (const auto& m : request.messages) usage.set_prompt_tokens(usage.prompt_tokens() + CountTokens(m.content()));

  if (b.time_to_first_token_ms() > 0) {
    if (auto s = wait(absl::Milliseconds(b.time_to_first_token_ms())); !s.ok()) return s;
  }
  const absl::Duration per_token =
      b.tokens_per_second() > 0 ? absl::Seconds(1.0 / b.tokens_per_second()) : absl::ZeroDuration();

  int64_t emitted = 0;
  auto inject_fault = [&] { return InjectFault(emitted, request.deadline, cancel); };

  if (std::string calls = ToolCalls(request); !calls.empty()) {
    if (per_token > absl::ZeroDuration()) {
      if (auto s = wait(per_token * CountTokens(calls)); !s.ok()) return s;
    }
    if (fault.kind() != v1::SimFault::KIND_NONE) return inject_fault();
    v1::InferChunk last;
    usage.set_completion_tokens(CountTokens(calls));
    *last.mutable_usage() = usage;
    last.set_finish_reason("tool_calls");
    last.set_tool_calls_json(std::move(calls));
    return last;
  }
  std::string finish_reason = "stop";
  nlohmann::json logprobs = nlohmann::json::array();
  std::string sent;  // the usage reported is the count of the whole text, as a server counts
  for (const std::string& piece : AnswerPieces(request, &finish_reason)) {
    if (fault.kind() != v1::SimFault::KIND_NONE && emitted >= fault.after_tokens()) {
      return inject_fault();
    }
    if (per_token > absl::ZeroDuration()) {
      if (auto s = wait(per_token); !s.ok()) return s;
    } else if (cancel.IsCancelled()) {
      return absl::CancelledError("cancelled");
    } else if (clock_->Now() > request.deadline) {
      return absl::DeadlineExceededError("simulated device: deadline exceeded");
    }
    if (!sink(piece)) return absl::CancelledError("consumer went away");
    emitted += CountTokens(piece);
    sent += piece;
    if (request.structure.logprobs()) {
      logprobs.push_back(SimulatedLogprob(piece, request.structure.top_logprobs()));
    }
  }
  if (fault.kind() != v1::SimFault::KIND_NONE) return inject_fault();
  emitted = CountTokens(sent);
  usage.set_completion_tokens(emitted);
  if (options_.backend.usage_claim_factor() > 1) {
    // The labelled lying-device fault: claim more than was sent.
    usage.set_completion_tokens(
        static_cast<int64_t>(static_cast<double>(emitted) * options_.backend.usage_claim_factor()));
  }
  v1::InferChunk last;
  *last.mutable_usage() = usage;
  last.set_finish_reason(finish_reason);
  if (request.structure.logprobs()) last.set_logprobs_json(DumpJson(logprobs));
  return last;
}

}  // namespace loom
