#include "common/openai_wire.h"

#include "absl/strings/str_cat.h"

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
  return absl::OkStatus();
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
    }
    if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
      c.finish_reason = choice["finish_reason"].get<std::string>();
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
