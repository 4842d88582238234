#include "common/openai_wire.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/categories.h"
#include "common/json_dump.h"

namespace loom {
namespace {

using json = nlohmann::json;

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("'", field, "' must be ", what));
}

// Reads an optional number in [lo, hi]; absent or null leaves `set` uncalled.
template <typename Set>
absl::Status Number(const json& j, const char* field, double lo, double hi, Set set) {
  if (!j.contains(field) || j[field].is_null()) return absl::OkStatus();
  if (!j[field].is_number() || j[field].get<double>() < lo || j[field].get<double>() > hi) {
    return Bad(field, absl::StrCat("a number from ", lo, " to ", hi));
  }
  set(j[field].get<double>());
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseSampling(const json& j, v1::Sampling* out) {
  if (auto s = Number(j, "temperature", 0, 2, [&](double v) { out->set_temperature(v); }); !s.ok()) return s;
  if (auto s = Number(j, "top_p", 0, 1, [&](double v) { out->set_top_p(v); }); !s.ok()) return s;
  if (auto s = Number(j, "presence_penalty", -2, 2, [&](double v) { out->set_presence_penalty(v); }); !s.ok()) return s;
  if (auto s = Number(j, "frequency_penalty", -2, 2, [&](double v) { out->set_frequency_penalty(v); }); !s.ok()) return s;
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) return Bad("seed", "an integer");
    out->set_seed(j["seed"].get<int64_t>());
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& stop = j["stop"];
    if (stop.is_string()) {
      out->add_stop(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4) {
      for (const json& s : stop) {
        if (!s.is_string()) return Bad("stop", "a string or an array of up to 4 strings");
        out->add_stop(s.get<std::string>());
      }
    } else {
      return Bad("stop", "a string or an array of up to 4 strings");
    }
  }
  if (j.contains("user") && !j["user"].is_null()) {
    if (!j["user"].is_string()) return Bad("user", "a string");
    out->set_user(j["user"].get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ParseLoomExtension(const json& j, v1::CompleteRequest* out) {
  if (!j.contains("loom")) return absl::OkStatus();
  const json& l = j["loom"];
  if (!l.is_object()) return Bad("loom", "an object");
  std::string mode;
  if (l.contains("mode")) {
    if (!l["mode"].is_string()) return Bad("loom.mode", "passthrough, compiled or compete");
    mode = l["mode"].get<std::string>();
  }
  if (mode == "passthrough") {
    out->set_mode(v1::PLAN_KIND_PASSTHROUGH);
  } else if (mode == "compiled") {
    out->set_mode(v1::PLAN_KIND_COMPILED);
  } else if (mode == "compete") {
    out->set_mode(v1::PLAN_KIND_COMPETE);
  } else if (!mode.empty()) {
    return Bad("loom.mode", "passthrough, compiled or compete");
  }
  if (l.contains("request_id")) {
    if (!l["request_id"].is_string()) return Bad("loom.request_id", "a string");
    out->set_request_id(l["request_id"].get<std::string>());
  }
  if (l.contains("policy") && !l["policy"].is_null()) {
    if (absl::Status s = ParsePolicy(l["policy"], out->mutable_policy()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParsePolicy(const json& p, v1::Policy* out) {
  if (p.is_string()) {  // "loom": {"policy": "loom-fast"}
    out->set_name(p.get<std::string>());
    return absl::OkStatus();
  }
  if (!p.is_object()) return Bad("loom.policy", "a policy name or an object");
  static constexpr const char* kKnown[] = {"name", "max_price_per_1k", "max_cost", "min_tokens_per_s",
                                           "max_ttft_ms", "trust", "regions", "private_only",
                                           "weights"};
  for (const auto& [key, value] : p.items()) {
    if (std::find_if(std::begin(kKnown), std::end(kKnown),
                     [&key = key](const char* k) { return key == k; }) ==
        std::end(kKnown)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'loom.policy.", key, "' is not a policy field (name, max_price_per_1k, max_cost, "
          "min_tokens_per_s, max_ttft_ms, trust, regions, private_only, weights)"));
    }
  }
  auto present = [&](const char* f) { return p.contains(f) && !p[f].is_null(); };
  if (present("name")) {
    if (!p["name"].is_string()) return Bad("loom.policy.name", "a string");
    out->set_name(p["name"].get<std::string>());
  }
  // Credits, as a client writes them; micro-credits on the wire inside the mesh.
  auto credits = [&](const char* f, auto set) -> absl::Status {
    if (!present(f)) return absl::OkStatus();
    if (!p[f].is_number() || p[f].get<double>() <= 0 || p[f].get<double>() > 1e6) {
      return Bad(absl::StrCat("loom.policy.", f), "a number of credits above 0 and at most 1000000");
    }
    set(std::max<int64_t>(1, static_cast<int64_t>(std::llround(p[f].get<double>() * 1e6))));
    return absl::OkStatus();
  };
  if (auto s = credits("max_price_per_1k", [&](int64_t v) { out->set_max_price_per_1k_micro(v); }); !s.ok()) return s;
  if (auto s = credits("max_cost", [&](int64_t v) { out->set_max_cost_micro(v); }); !s.ok()) return s;
  if (present("min_tokens_per_s")) {
    if (!p["min_tokens_per_s"].is_number()) return Bad("loom.policy.min_tokens_per_s", "a number");
    out->set_min_tokens_per_s(p["min_tokens_per_s"].get<double>());
  }
  if (present("max_ttft_ms")) {
    if (!p["max_ttft_ms"].is_number_integer()) return Bad("loom.policy.max_ttft_ms", "an integer");
    out->set_max_ttft_ms(p["max_ttft_ms"].get<int64_t>());
  }
  if (present("trust")) {
    std::optional<v1::TrustTier> tier =
        p["trust"].is_string() ? ParseTrustTier(p["trust"].get<std::string>()) : std::nullopt;
    if (!tier) return Bad("loom.policy.trust", "community, verified or owned");
    out->set_trust(*tier);
  }
  if (present("regions")) {
    if (!p["regions"].is_array()) return Bad("loom.policy.regions", "an array of region names");
    for (const json& r : p["regions"]) {
      if (!r.is_string()) return Bad("loom.policy.regions", "an array of region names");
      out->add_regions(r.get<std::string>());
    }
  }
  if (present("private_only")) {
    if (!p["private_only"].is_boolean()) return Bad("loom.policy.private_only", "true or false");
    out->set_private_only(p["private_only"].get<bool>());
  }
  if (present("weights")) {
    const json& w = p["weights"];
    if (!w.is_object()) return Bad("loom.policy.weights", "an object of quality, cost, latency, carbon");
    v1::PolicyWeights* weights = out->mutable_weights();
    for (const auto& [key, value] : w.items()) {
      if (!value.is_number()) return Bad(absl::StrCat("loom.policy.weights.", key), "a number");
      const double v = value.get<double>();
      if (key == "quality") weights->set_quality(v);
      else if (key == "cost") weights->set_cost(v);
      else if (key == "latency") weights->set_latency(v);
      else if (key == "carbon") weights->set_carbon(v);
      else return Bad(absl::StrCat("loom.policy.weights.", key), "one of quality, cost, latency, carbon");
    }
  }
  return absl::OkStatus();
}

absl::Status ParseStructure(const json& j, v1::Structure* out) {
  auto present = [&](const char* f) { return j.contains(f) && !j[f].is_null(); };
  if (present("tools")) {
    const json& tools = j["tools"];
    if (!tools.is_array()) return Bad("tools", "an array of function tools");
    for (size_t i = 0; i < tools.size(); ++i) {
      const json& t = tools[i];
      const std::string at = absl::StrCat("tools[", i, "]");
      if (!t.is_object() || t.value("type", "") != "function") {
        return Bad(at + ".type", "\"function\" (the only tool type devices call)");
      }
      if (!t.contains("function") || !t["function"].is_object() ||
          !t["function"].contains("name") || !t["function"]["name"].is_string() ||
          t["function"]["name"].get<std::string>().empty()) {
        return Bad(at + ".function.name", "a non-empty string");
      }
      if (t["function"].contains("parameters") && !t["function"]["parameters"].is_null() &&
          !t["function"]["parameters"].is_object()) {
        return Bad(at + ".function.parameters", "a JSON Schema object");
      }
    }
    if (!tools.empty()) out->set_tools_json(DumpJson(tools));
  }
  if (present("tool_choice")) {
    const json& c = j["tool_choice"];
    const bool word = c.is_string() && (c == "auto" || c == "none" || c == "required");
    const bool named = c.is_object() && c.value("type", "") == "function" && c.contains("function") &&
                       c["function"].is_object() && c["function"].contains("name") &&
                       c["function"]["name"].is_string();
    if (!word && !named) {
      return Bad("tool_choice", "\"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    out->set_tool_choice_json(DumpJson(c));
  }
  if (present("parallel_tool_calls")) {
    if (!j["parallel_tool_calls"].is_boolean()) return Bad("parallel_tool_calls", "true or false");
    out->set_parallel_tool_calls(j["parallel_tool_calls"].get<bool>());
  }
  if (present("response_format")) {
    const json& f = j["response_format"];
    const std::string type = f.is_object() && f.contains("type") && f["type"].is_string()
                                 ? f["type"].get<std::string>()
                                 : "";
    if (type == "json_schema") {
      if (!f.contains("json_schema") || !f["json_schema"].is_object() ||
          !f["json_schema"].contains("schema") || !f["json_schema"]["schema"].is_object()) {
        return Bad("response_format.json_schema.schema", "a JSON Schema object");
      }
    } else if (type != "text" && type != "json_object") {
      return Bad("response_format.type", "text, json_object or json_schema");
    }
    if (type != "text") out->set_response_format_json(DumpJson(f));
  }
  if (present("logit_bias")) {
    const json& bias = j["logit_bias"];
    if (!bias.is_object() || bias.size() > 1024) {
      return Bad("logit_bias", "an object of at most 1024 token ids to biases");
    }
    for (const auto& [token, value] : bias.items()) {
      const bool id = !token.empty() && token.size() <= 10 &&
                      std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!id || !value.is_number() || value.get<double>() < -100 || value.get<double>() > 100) {
        return Bad("logit_bias", "an object of token ids (digits) to biases from -100 to 100");
      }
    }
    if (!bias.empty()) out->set_logit_bias_json(DumpJson(bias));
  }
  if (present("logprobs")) {
    if (!j["logprobs"].is_boolean()) return Bad("logprobs", "true or false");
    out->set_logprobs(j["logprobs"].get<bool>());
  }
  if (present("top_logprobs")) {
    const json& k = j["top_logprobs"];
    if (!k.is_number_integer() || k.get<int64_t>() < 0 || k.get<int64_t>() > 20) {
      return Bad("top_logprobs", "an integer from 0 to 20");
    }
    if (k.get<int64_t>() > 0 && !out->logprobs()) return Bad("top_logprobs", "used with logprobs: true");
    out->set_top_logprobs(k.get<int>());
  }
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> NeededCapabilities(
    const v1::Structure& s, const google::protobuf::RepeatedPtrField<v1::ChatMessage>& messages) {
  std::vector<std::pair<std::string, std::string>> out;
  bool tool_turns = false;
  for (const auto& m : messages) tool_turns |= !m.tool_calls_json().empty() || m.role() == "tool";
  if (!s.tools_json().empty() || tool_turns) out.emplace_back(kCapabilityTools, "tools");
  if (!s.response_format_json().empty()) out.emplace_back(kCapabilityJsonSchema, "response_format");
  if (s.logprobs()) out.emplace_back(kCapabilityLogprobs, "logprobs");
  for (const auto& m : messages) {
    if (!m.content_parts_json().empty()) {
      out.emplace_back(kCapabilityVision, "messages[].content (image_url parts)");
      break;
    }
  }
  return out;
}

void AddStructure(const v1::Structure& s, json* request) {
  json& r = *request;
  auto parsed = [](const std::string& text) { return json::parse(text, nullptr, false); };
  if (!s.tools_json().empty()) r["tools"] = parsed(s.tools_json());
  if (!s.tool_choice_json().empty()) r["tool_choice"] = parsed(s.tool_choice_json());
  if (s.has_parallel_tool_calls()) r["parallel_tool_calls"] = s.parallel_tool_calls();
  if (!s.response_format_json().empty()) r["response_format"] = parsed(s.response_format_json());
  if (!s.logit_bias_json().empty()) r["logit_bias"] = parsed(s.logit_bias_json());
  if (s.logprobs()) {
    r["logprobs"] = true;
    if (s.top_logprobs() > 0) r["top_logprobs"] = s.top_logprobs();
  }
}

json MessageJson(const v1::ChatMessage& m) {
  json out = {{"role", m.role()}};
  if (!m.tool_calls_json().empty()) {
    out["tool_calls"] = json::parse(m.tool_calls_json(), nullptr, false);
    out["content"] = m.content().empty() ? json(nullptr) : json(m.content());
  } else if (!m.content_parts_json().empty()) {
    json parts = json::parse(m.content_parts_json(), nullptr, false);
    out["content"] = parts.is_array() ? parts : json(m.content());
  } else {
    out["content"] = m.content();
  }
  if (!m.tool_call_id().empty()) out["tool_call_id"] = m.tool_call_id();
  if (!m.name().empty()) out["name"] = m.name();
  return out;
}

void ToolCallAssembler::Add(const ToolCallDelta& d) {
  if (d.index < 0 || d.index > 128) return;  // a hostile index: nothing sane to assemble
  if (static_cast<size_t>(d.index) >= calls_.size()) calls_.resize(d.index + 1);
  ToolCallDelta& call = calls_[d.index];
  call.index = d.index;
  if (!d.id.empty()) call.id = d.id;
  call.name += d.name;
  call.arguments += d.arguments;
}

std::string ToolCallAssembler::Json() const {
  if (calls_.empty()) return "";
  json out = json::array();
  for (const ToolCallDelta& c : calls_) {
    out.push_back({{"id", c.id}, {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return DumpJson(out);
}

void AddSampling(const v1::Sampling& s, json* request) {
  json& r = *request;
  if (s.has_temperature()) r["temperature"] = s.temperature();
  if (s.has_top_p()) r["top_p"] = s.top_p();
  if (s.has_seed()) r["seed"] = s.seed();
  if (s.has_presence_penalty()) r["presence_penalty"] = s.presence_penalty();
  if (s.has_frequency_penalty()) r["frequency_penalty"] = s.frequency_penalty();
  if (!s.stop().empty()) r["stop"] = std::vector<std::string>(s.stop().begin(), s.stop().end());
  if (!s.user().empty()) r["user"] = s.user();
}

std::string NormalizeFinishReason(const std::string& reason) {
  for (const char* known : {"stop", "length", "content_filter", "tool_calls"}) {
    if (reason == known) return reason;
  }
  return "stop";
}

std::optional<ChatChunk> ParseChatChunk(absl::string_view data) {
  json j = json::parse(data.begin(), data.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  ChatChunk c;
  if (j.contains("error")) {
    const json& e = j["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) {
      c.error = e["message"].get<std::string>();
    } else if (e.is_string()) {
      c.error = e.get<std::string>();
    } else {
      c.error = "the server reported an error";
    }
    return c;
  }
  if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty() &&
      j["choices"][0].is_object()) {
    const json& choice = j["choices"][0];
    if (choice.contains("delta") && choice["delta"].is_object()) {
      const json& delta = choice["delta"];
      if (delta.contains("content") && delta["content"].is_string()) {
        c.content = delta["content"].get<std::string>();
      }
      if (delta.contains("tool_calls") && delta["tool_calls"].is_array()) {
        for (const json& t : delta["tool_calls"]) {
          if (!t.is_object()) continue;
          ToolCallDelta d;
          if (t.contains("index") && t["index"].is_number_integer()) d.index = t["index"].get<int>();
          if (t.contains("id") && t["id"].is_string()) d.id = t["id"].get<std::string>();
          if (t.contains("function") && t["function"].is_object()) {
            const json& f = t["function"];
            if (f.contains("name") && f["name"].is_string()) d.name = f["name"].get<std::string>();
            if (f.contains("arguments") && f["arguments"].is_string()) {
              d.arguments = f["arguments"].get<std::string>();
            }
          }
          c.tool_calls.push_back(std::move(d));
        }
      }
    }
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
      c.finish_reason = choice["finish_reason"].get<std::string>();
    }
    if (choice.contains("logprobs") && choice["logprobs"].is_object() &&
        choice["logprobs"].contains("content") && choice["logprobs"]["content"].is_array()) {
      c.logprobs = choice["logprobs"]["content"];
    }
  }
  if (j.contains("usage") && j["usage"].is_object()) {
    const json& u = j["usage"];
    if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer()) {
      c.prompt_tokens = u["prompt_tokens"].get<int64_t>();
    }
    if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer()) {
      c.completion_tokens = u["completion_tokens"].get<int64_t>();
    }
  }
  return c;
}

}  // namespace loom
