#include "coordinator/front/responses_api.h"

#include "absl/strings/str_cat.h"
#include "common/auto_model.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"

namespace loom {
namespace {

using json = nlohmann::json;

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("'", field, "' must be ", what));
}

absl::Status Unsupported(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "'", field, "' is not supported by this mesh (", why, "); remove it, or ask the operator "
      "to start the coordinator with --drop_params to have it ignored"));
}

// The text of an input item's content: a string, or text parts joined.
absl::Status ContentText(const json& content, const std::string& at, std::string* out) {
  if (content.is_string()) {
    *out = content.get<std::string>();
    return absl::OkStatus();
  }
  if (!content.is_array()) return Bad(at, "a string or an array of input_text parts");
  for (size_t k = 0; k < content.size(); ++k) {
    const json& part = content[k];
    const std::string part_at = absl::StrCat(at, "[", k, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return Bad(part_at + ".type", "a string");
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "input_text" && type != "output_text" && type != "text") {
      return absl::InvalidArgumentError(absl::StrCat(
          part_at, " is an '", type, "' part; no device on this mesh takes those (text only)"));
    }
    if (!part.contains("text") || !part["text"].is_string()) return Bad(part_at + ".text", "a string");
    *out += part["text"].get<std::string>();
  }
  return absl::OkStatus();
}

void AddMessage(v1::CompleteRequest* request, const std::string& role, const std::string& text) {
  v1::ChatMessage* m = request->add_messages();
  m->set_role(role);
  m->set_content(text);
}

}  // namespace

// Long on purpose: one pass over the Responses API's fields, as in ParseChatRequest.
absl::Status ParseResponsesRequest(const std::string& body, bool drop_unsupported,
                                   ResponsesRequest* out, const ItemResolver& resolve) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the body is not a JSON object (or not valid UTF-8)");
  }
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("'model' is required: loom-auto or a model on the mesh");
  }
  out->model = j["model"].get<std::string>();
  if (out->model != kAutoModel) out->request.set_model(out->model);
  v1::CompleteRequest& r = out->request;

  // Fields whose loss would change the answer: refused by name, or dropped on request.
  auto present = [&](const char* f) { return j.contains(f) && !j[f].is_null(); };
  std::vector<std::pair<std::string, std::string>> unsupported;
  if (present("previous_response_id")) {
    unsupported.emplace_back("previous_response_id", "Loom keeps no conversation state: send the whole input");
  }
  if (present("conversation")) unsupported.emplace_back("conversation", "Loom keeps no conversation state");
  // Function tools, in the Responses form ({"type": "function", "name", "parameters"}), become
  // the chat form the devices' backends take; other tool types (web search, files, ...) need
  // hosted tools no device has.
  if (present("tools") || present("tool_choice") || present("parallel_tool_calls")) {
    json chat = json::object();
    if (present("tools")) {
      if (!j["tools"].is_array()) return Bad("tools", "an array of function tools");
      chat["tools"] = json::array();
      for (size_t i = 0; i < j["tools"].size(); ++i) {
        const json& t = j["tools"][i];
        const std::string at = absl::StrCat("tools[", i, "]");
        if (!t.is_object() || t.value("type", "") != "function") {
          return absl::InvalidArgumentError(absl::StrCat(
              "'", at, ".type' must be \"function\": this mesh has no hosted tools"));
        }
        if (!t.contains("name") || !t["name"].is_string()) return Bad(at + ".name", "a string");
        json function = {{"name", t["name"]}};
        for (const char* key : {"description", "parameters", "strict"}) {
          if (t.contains(key) && !t[key].is_null()) function[key] = t[key];
        }
        chat["tools"].push_back({{"type", "function"}, {"function", std::move(function)}});
      }
    }
    if (present("tool_choice")) {
      const json& c = j["tool_choice"];
      if (c.is_object() && c.value("type", "") == "function" && c.contains("name")) {
        chat["tool_choice"] = {{"type", "function"}, {"function", {{"name", c["name"]}}}};
      } else {
        chat["tool_choice"] = c;
      }
    }
    if (present("parallel_tool_calls")) chat["parallel_tool_calls"] = j["parallel_tool_calls"];
    if (absl::Status s = ParseStructure(chat, r.mutable_structure()); !s.ok()) return s;
  }
  if (present("text")) {
    const json& t = j["text"];
    const bool plain = t.is_object() && (!t.contains("format") || t["format"].is_null() ||
                                         (t["format"].is_object() && t["format"].value("type", "") == "text"));
    if (!plain) unsupported.emplace_back("text", "only text output: no json_schema or json_object yet");
  }
  if (present("reasoning")) unsupported.emplace_back("reasoning", "no reasoning settings on this mesh");
  if (present("background") && j["background"] != false) {
    unsupported.emplace_back("background", "responses are answered while the client waits");
  }
  if (present("include") && !(j["include"].is_array() && j["include"].empty())) {
    unsupported.emplace_back("include", "no extra output items on this mesh");
  }
  for (const auto& [field, why] : unsupported) {
    if (!drop_unsupported) return Unsupported(field, why);
    out->dropped.push_back(field);
  }

  if (present("instructions")) {
    if (!j["instructions"].is_string()) return Bad("instructions", "a string");
    AddMessage(&r, "system", j["instructions"].get<std::string>());
  }
  if (!j.contains("input") || j["input"].is_null()) {
    return absl::InvalidArgumentError("'input' is required: a string or an array of messages");
  }
  const json& input = j["input"];
  if (input.is_string()) {
    AddMessage(&r, "user", input.get<std::string>());
  } else if (input.is_array() && !input.empty()) {
    for (size_t i = 0; i < input.size(); ++i) {
      const std::string at = absl::StrCat("input[", i, "]");
      json referenced;
      if (input[i].is_object() && input[i].value("type", "") == "item_reference") {
        const json& ref = input[i];
        if (!ref.contains("id") || !ref["id"].is_string()) return Bad(at + ".id", "a string");
        std::optional<json> found = resolve ? resolve(ref["id"].get<std::string>()) : std::nullopt;
        if (!found) {
          return absl::InvalidArgumentError(absl::StrCat(
              at, " refers to item '", ref["id"].get<std::string>(), "', which this coordinator "
              "does not keep (it keeps output items for an hour, in memory): send the item "
              "itself, or have the client not store responses (store: false)"));
        }
        referenced = *std::move(found);
      }
      const json& item = referenced.is_null() ? input[i] : referenced;
      if (!item.is_object()) return Bad(at, "an object");
      const std::string type = item.contains("type") && item["type"].is_string()
                                   ? item["type"].get<std::string>()
                                   : "message";
      if (type == "function_call") {
        // The model's call from an earlier turn: consecutive calls are one assistant turn.
        for (const char* key : {"call_id", "name", "arguments"}) {
          if (!item.contains(key) || !item[key].is_string()) {
            return Bad(absl::StrCat(at, ".", key), "a string");
          }
        }
        const json call = {{"id", item["call_id"]}, {"type", "function"},
                           {"function", {{"name", item["name"]}, {"arguments", item["arguments"]}}}};
        const int n = r.messages_size();
        if (n > 0 && r.messages(n - 1).role() == "assistant" &&
            !r.messages(n - 1).tool_calls_json().empty()) {
          json calls = json::parse(r.messages(n - 1).tool_calls_json(), nullptr, false);
          calls.push_back(call);
          r.mutable_messages(n - 1)->set_tool_calls_json(DumpJson(calls));
        } else {
          v1::ChatMessage* m = r.add_messages();
          m->set_role("assistant");
          m->set_tool_calls_json(DumpJson(json::array({call})));
        }
        continue;
      }
      if (type == "function_call_output") {
        if (!item.contains("call_id") || !item["call_id"].is_string()) {
          return Bad(at + ".call_id", "a string");
        }
        if (!item.contains("output")) return Bad(at + ".output", "a string or an array of parts");
        std::string output;
        if (absl::Status s = ContentText(item["output"], at + ".output", &output); !s.ok()) return s;
        v1::ChatMessage* m = r.add_messages();
        m->set_role("tool");
        m->set_tool_call_id(item["call_id"].get<std::string>());
        m->set_content(output);
        continue;
      }
      if (type != "message") {
        return absl::InvalidArgumentError(absl::StrCat(
            at, " is a '", type, "' item; this mesh takes message, function_call and "
            "function_call_output items"));
      }
      if (!item.contains("role") || !item["role"].is_string()) return Bad(at + ".role", "a string");
      std::string role = item["role"].get<std::string>();
      if (role == "developer") role = "system";
      if (role != "user" && role != "system" && role != "assistant") {
        return Bad(at + ".role", "user, assistant, system or developer");
      }
      if (!item.contains("content")) return Bad(at + ".content", "a string or an array of parts");
      std::string text;
      if (absl::Status s = ContentText(item["content"], at + ".content", &text); !s.ok()) return s;
      AddMessage(&r, role, text);
    }
  } else {
    return Bad("input", "a string or a non-empty array of messages");
  }
  if (present("max_output_tokens")) {
    if (!j["max_output_tokens"].is_number_integer() || j["max_output_tokens"].get<int64_t>() < 0) {
      return Bad("max_output_tokens", "a non-negative integer");
    }
    r.set_max_tokens(j["max_output_tokens"].get<int64_t>());
  }
  out->stream = false;
  if (present("stream")) {
    if (!j["stream"].is_boolean()) return Bad("stream", "true or false");
    out->stream = j["stream"].get<bool>();
  }
  if (absl::Status s = ParseSampling(j, r.mutable_sampling()); !s.ok()) return s;
  return ParseLoomExtension(j, &r);
}

namespace {

json MessageItem(const std::string& id, const std::string& status, const std::string& text,
                 bool with_content) {
  json content = json::array();
  if (with_content) {
    content.push_back({{"type", "output_text"}, {"text", text}, {"annotations", json::array()}});
  }
  return {{"type", "message"}, {"id", id}, {"status", status}, {"role", "assistant"},
          {"content", content}};
}

json Usage(int64_t input_tokens, int64_t output_tokens) {
  return {{"input_tokens", input_tokens},
          {"input_tokens_details", {{"cached_tokens", 0}}},
          {"output_tokens", output_tokens},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", input_tokens + output_tokens}};
}

// The model's tool calls (chat form, OpenAI's message.tool_calls) as function_call items.
std::vector<json> FunctionCallItems(const std::string& tool_calls_json) {
  std::vector<json> items;
  if (tool_calls_json.empty()) return items;
  json calls = json::parse(tool_calls_json, nullptr, false);
  if (!calls.is_array()) return items;
  for (const json& c : calls) {
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
    const std::string call_id = c.value("id", absl::StrCat("call_", items.size()));
    items.push_back({{"type", "function_call"}, {"id", absl::StrCat("fc_", call_id)},
                     {"call_id", call_id}, {"name", c["function"].value("name", "")},
                     {"arguments", c["function"].value("arguments", "")},
                     {"status", "completed"}});
  }
  return items;
}

json Base(const std::string& id, int64_t created, const std::string& model, const std::string& status) {
  return {{"id", id}, {"object", "response"}, {"created_at", created}, {"status", status},
          {"model", model}, {"output", json::array()}, {"error", nullptr},
          {"incomplete_details", nullptr}, {"usage", nullptr}, {"parallel_tool_calls", false},
          {"tools", json::array()}, {"tool_choice", "none"}, {"store", false},
          {"text", {{"format", {{"type", "text"}}}}}, {"metadata", json::object()}};
}

}  // namespace

json ResponseJson(const std::string& id, int64_t created, const std::string& model,
                  const std::string& status, const std::string& text, int64_t input_tokens,
                  int64_t output_tokens, const std::string& tool_calls_json) {
  json r = Base(id, created, model, status);
  if (status == "in_progress") return r;
  const std::vector<json> calls = FunctionCallItems(tool_calls_json);
  if (!text.empty() || calls.empty()) {
    r["output"].push_back(MessageItem(absl::StrCat("msg_", id.substr(id.find('_') + 1)),
                                      status, text, true));
  }
  for (const json& call : calls) r["output"].push_back(call);
  r["usage"] = Usage(input_tokens, output_tokens);
  r["output_text"] = text;
  if (status == "incomplete") r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  return r;
}

ResponsesStream::ResponsesStream(std::string id, int64_t created, std::string model)
    : id_(std::move(id)),
      item_id_(absl::StrCat("msg_", id_.substr(id_.find('_') + 1))),
      created_(created),
      model_(std::move(model)) {}

std::string ResponsesStream::Event(const std::string& type, json data) {
  data["type"] = type;
  data["sequence_number"] = sequence_++;
  return absl::StrCat("event: ", type, "\ndata: ", DumpJson(data), "\n\n");
}

std::string ResponsesStream::Start() {
  // One statement per event: their sequence numbers follow the order they are written in
  // (the arguments of one StrCat are evaluated in no fixed order).
  const json in_progress = Base(id_, created_, model_, "in_progress");
  std::string out = Event("response.created", {{"response", in_progress}});
  out += Event("response.in_progress", {{"response", in_progress}});
  out += Event("response.output_item.added",
               {{"output_index", 0}, {"item", MessageItem(item_id_, "in_progress", "", false)}});
  out += Event("response.content_part.added",
               {{"item_id", item_id_}, {"output_index", 0}, {"content_index", 0},
                {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
  return out;
}

std::string ResponsesStream::Delta(const std::string& text) {
  text_ += text;
  return Event("response.output_text.delta", {{"item_id", item_id_}, {"output_index", 0},
                                              {"content_index", 0}, {"delta", text},
                                              {"logprobs", json::array()}});
}

std::string ResponsesStream::Finish(const std::string& finish_reason, int64_t input_tokens,
                                    int64_t output_tokens, const json& loom,
                                    const std::string& tool_calls_json) {
  const std::string status = finish_reason == "length" ? "incomplete" : "completed";
  json done = ResponseJson(id_, created_, model_, status, text_, input_tokens, output_tokens,
                           tool_calls_json);
  if (!loom.is_null()) done["loom"] = loom;
  const json part = {{"type", "output_text"}, {"text", text_}, {"annotations", json::array()}};
  std::string out = Event("response.output_text.done",
                          {{"item_id", item_id_}, {"output_index", 0}, {"content_index", 0},
                           {"text", text_}, {"logprobs", json::array()}});
  out += Event("response.content_part.done",
               {{"item_id", item_id_}, {"output_index", 0}, {"content_index", 0}, {"part", part}});
  out += Event("response.output_item.done",
               {{"output_index", 0}, {"item", MessageItem(item_id_, status, text_, true)}});
  // Tool calls follow the message (the streamed text, maybe empty), each item whole.
  int index = 1;
  for (const json& call : FunctionCallItems(tool_calls_json)) {
    json added = call;
    added["arguments"] = "";
    added["status"] = "in_progress";
    out += Event("response.output_item.added", {{"output_index", index}, {"item", added}});
    out += Event("response.function_call_arguments.delta",
                 {{"item_id", call["id"]}, {"output_index", index}, {"delta", call["arguments"]}});
    out += Event("response.function_call_arguments.done",
                 {{"item_id", call["id"]}, {"output_index", index}, {"arguments", call["arguments"]}});
    out += Event("response.output_item.done", {{"output_index", index}, {"item", call}});
    ++index;
  }
  if (text_.empty() && index > 1) {
    // The completed response lists what was streamed: the (empty) message item first.
    done["output"].insert(done["output"].begin(), MessageItem(item_id_, status, text_, true));
  }
  completed_ = done;
  out += Event(status == "completed" ? "response.completed" : "response.incomplete",
               {{"response", done}});
  return out;
}

std::string ResponsesStream::Fail(const std::string& code, const std::string& message) {
  json failed = Base(id_, created_, model_, "failed");
  failed["error"] = {{"code", code}, {"message", message}};
  return Event("response.failed", {{"response", failed}});
}

void ResponseItemCache::Put(const std::string& client, const json& response, absl::Time now) {
  if (!response.contains("output") || !response["output"].is_array()) return;
  absl::MutexLock lock(&mu_);
  for (const json& item : response["output"]) {
    if (!item.is_object() || !item.contains("id") || !item["id"].is_string()) continue;
    const std::string key = absl::StrCat(client, "/", item["id"].get<std::string>());
    if (items_.insert_or_assign(key, Kept{item, now}).second) order_.push_back(key);
  }
  while (!order_.empty() &&
         (items_.size() > max_items_ || items_[order_.front()].at + ttl_ < now)) {
    items_.erase(order_.front());
    order_.pop_front();
  }
}

std::optional<json> ResponseItemCache::Get(const std::string& client, const std::string& item_id,
                                           absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = items_.find(absl::StrCat(client, "/", item_id));
  if (it == items_.end() || it->second.at + ttl_ < now) return std::nullopt;
  return it->second.item;
}

}  // namespace loom
