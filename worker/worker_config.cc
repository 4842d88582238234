#include "worker/worker_config.h"

#include <algorithm>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/categories.h"
#include "common/ids.h"
#include "common/identity.h"
#include "worker/openai_provider.h"
#include "worker/sim_provider.h"

namespace loom {
namespace {

absl::Status FieldError(const std::string& origin, const std::string& field,
                        const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": ", field, ": ", problem));
}

bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '/')) {
      return false;
    }
  }
  return true;
}

constexpr char kNameRule[] = "must be 1-128 characters of letters, digits, - _ . : /";

}  // namespace

std::string GuessFamily(const std::string& model_name) {
  const std::string n = absl::AsciiStrToLower(model_name);
  if (absl::StrContains(n, "qwen") && absl::StrContains(n, "coder")) return "qwen-coder";
  if (absl::StrContains(n, "qwen")) return "qwen";
  if (absl::StrContains(n, "codellama")) return "llama";
  if (absl::StrContains(n, "llama")) return "llama";
  if (absl::StrContains(n, "mistral") || absl::StrContains(n, "mixtral")) return "mistral";
  if (absl::StrContains(n, "deepseek") && absl::StrContains(n, "coder")) return "deepseek-coder";
  if (absl::StrContains(n, "phi")) return "phi";
  if (absl::StrContains(n, "gemma")) return "gemma";
  return "";
}

bool IsEmbeddingModelName(const std::string& name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (const char* marker : {"embed", "bge-", "minilm", "e5-", "gte-"}) {
    if (absl::StrContains(lower, marker)) return true;
  }
  return false;
}

DiscoveredModels SelectDiscoveredModels(const std::vector<std::string>& listed) {
  DiscoveredModels out;
  for (const std::string& name : listed) {
    if (IsEmbeddingModelName(name)) {
      out.embeddings.push_back(name);
    } else if (GuessFamily(name).empty()) {
      out.skipped.emplace_back(name, absl::StrCat("its family cannot be told from the name; "
                                                  "serve it with --model=", name,
                                                  " --family=FAMILY"));
    } else {
      out.served.push_back(name);
    }
  }
  return out;
}

// Long on purpose: one check per config field, each naming the field and `origin` in its error.
absl::StatusOr<v1::WorkerConfig> ValidateWorkerConfig(v1::WorkerConfig config,
                                                      const std::string& origin) {
  // Device and provider ids appear in certificates and join tokens: no ':' or '/'.
  constexpr char kIdRule[] = "must be 1-128 characters of letters, digits, - _ .";
  if (!IsValidId(config.device_id())) return FieldError(origin, "device_id", kIdRule);
  if (!IsValidId(config.provider_id())) return FieldError(origin, "provider_id", kIdRule);
  if (config.tls().cert().empty() != config.tls().key().empty()) {
    return FieldError(origin, "tls.key", "tls.cert and tls.key go together");
  }
  if (config.tls().plaintext() && !config.tls().cert().empty()) {
    return FieldError(origin, "tls.plaintext", "contradicts tls.cert");
  }
  if (!config.region().empty() && !IsValidRegion(config.region())) {
    return FieldError(origin, "region", "must be 1-32 characters of a-z, 0-9 and - (e.g. eu-west)");
  }
  if (config.has_carbon_g_per_kwh() &&
      !(config.carbon_g_per_kwh() >= 0 && config.carbon_g_per_kwh() <= 2000)) {
    return FieldError(origin, "carbon_g_per_kwh", "must be from 0 to 2000 (gCO2e/kWh)");
  }
  if (config.max_concurrency() == 0) config.set_max_concurrency(4);
  if (config.max_concurrency() < 0 || config.max_concurrency() > kMaxConcurrency) {
    return FieldError(origin, "max_concurrency", absl::StrCat("must be 1-", kMaxConcurrency));
  }
  if (config.models().empty()) return FieldError(origin, "models", "at least one model is needed");
  if (config.models_size() > kMaxModelsPerDevice) {
    return FieldError(origin, "models", absl::StrCat("at most ", kMaxModelsPerDevice));
  }
  std::set<std::string> names;
  for (int i = 0; i < config.models_size(); ++i) {
    v1::ModelConfig* m = config.mutable_models(i);
    const std::string field = absl::StrCat("models[", i, "]");
    if (!ValidName(m->info().name())) return FieldError(origin, field + ".info.name", kNameRule);
    if (!names.insert(m->info().name()).second) {
      return FieldError(origin, field + ".info.name",
                        absl::StrCat("model '", m->info().name(), "' is listed twice"));
    }
    const auto& caps = m->info().capabilities();
    const bool embeds = std::find(caps.begin(), caps.end(), "embeddings") != caps.end();
    if (embeds && caps.size() > 1) {
      return FieldError(origin, field + ".info.capabilities",
                        "an embedding model has no other capability (it does not chat)");
    }
    if (m->info().family().empty() && embeds) m->mutable_info()->set_family("embedding");
    if (m->info().family().empty()) m->mutable_info()->set_family(GuessFamily(m->info().name()));
    if (m->info().family().empty()) {
      return FieldError(origin, field + ".info.family",
                        "cannot guess the family from the name; set it");
    }
    if (!ValidName(m->info().family())) return FieldError(origin, field + ".info.family", kNameRule);
    if (m->info().parameters_b() < 0) return FieldError(origin, field + ".info.parameters_b", "negative");
    if (m->info().context_length() < 0) {
      return FieldError(origin, field + ".info.context_length", "negative");
    }
    if (m->info().context_length() == 0) m->mutable_info()->set_context_length(8192);
    if (m->info().max_output_tokens() < 0) {
      return FieldError(origin, field + ".info.max_output_tokens", "negative");
    }
    // A simulated device never writes more than its configured answer length.
    if (m->info().max_output_tokens() == 0 && m->has_sim()) {
      m->mutable_info()->set_max_output_tokens(
          m->sim().output_tokens() > 0 ? m->sim().output_tokens() : 64);
    }
    // A simulated device honours tools and JSON output (SimProvider); a real backend
    // advertises what its operator lists, since servers differ (llama-server needs --jinja
    // for tools, Ollama only some models).
    for (const std::string& c : m->info().capabilities()) {
      if (c != "tools" && c != "json_schema" && c != "vision" && c != "continue" &&
          c != "embeddings" && c != "logprobs") {
        return FieldError(origin, field + ".info.capabilities",
                          absl::StrCat("'", c, "' is not tools, json_schema, vision, continue, "
                                       "logprobs or embeddings"));
      }
    }
    if (m->info().capabilities().empty() && m->has_sim()) {
      m->mutable_info()->add_capabilities("tools");
      m->mutable_info()->add_capabilities("json_schema");
      m->mutable_info()->add_capabilities("continue");
      m->mutable_info()->add_capabilities("vision");
      m->mutable_info()->add_capabilities("logprobs");
    }
    if (m->info().price_per_1k_micro() < 0) {
      return FieldError(origin, field + ".info.price_per_1k_micro", "negative");
    }
    for (const auto& [category, score] : m->info().affinity_overrides()) {
      if (!ParseCategory(category)) {
        return FieldError(origin, field + ".info.affinity_overrides." + category,
                          "unknown category (use code, reasoning, creative, factual, "
                          "summarization, translation, structured or general)");
      }
      if (score < 0 || score > 1) {
        return FieldError(origin, field + ".info.affinity_overrides." + category,
                          "must be in [0, 1]");
      }
    }
    switch (m->backend_case()) {
      case v1::ModelConfig::kSim: {
        const v1::SimBackend& sim = m->sim();
        if (sim.time_to_first_token_ms() < 0) {
          return FieldError(origin, field + ".sim.time_to_first_token_ms", "negative");
        }
        if (sim.tokens_per_second() < 0) {
          return FieldError(origin, field + ".sim.tokens_per_second", "negative");
        }
        if (sim.output_tokens() < 0 || sim.output_tokens() > kMaxSimOutputTokens) {
          return FieldError(origin, field + ".sim.output_tokens",
                            absl::StrCat("must be 0-", kMaxSimOutputTokens));
        }
        if (sim.usage_claim_factor() < 0 || sim.usage_claim_factor() > 1000) {
          return FieldError(origin, field + ".sim.usage_claim_factor", "must be 0-1000");
        }
        if (sim.fault().after_tokens() < 0) {
          return FieldError(origin, field + ".sim.fault.after_tokens", "negative");
        }
        break;
      }
      case v1::ModelConfig::kOpenai: {
        v1::OpenAIBackend* o = m->mutable_openai();
        std::string host, prefix;
        if (absl::Status s = SplitBaseUrl(o->base_url(), &host, &prefix); !s.ok()) {
          return FieldError(origin, field + ".openai.base_url", std::string(s.message()));
        }
        if (o->model().empty()) o->set_model(m->info().name());
        if (o->connect_timeout_ms() < 0 || o->read_timeout_ms() < 0) {
          return FieldError(origin, field + ".openai", "negative timeout");
        }
        break;
      }
      default:
        return FieldError(origin, field, "no backend (set \"sim\" or \"openai\")");
    }
  }
  return config;
}

absl::StatusOr<std::vector<ServedModel>> BuildServedModels(const v1::WorkerConfig& config) {
  std::vector<ServedModel> served;
  for (const auto& m : config.models()) {
    ServedModel s;
    s.info = m.info();
    if (m.has_openai()) {
      const v1::OpenAIBackend& o = m.openai();
      OpenAIProviderOptions options{.base_url = o.base_url(), .model = o.model(),
                                    .api_key = o.api_key()};
      if (o.connect_timeout_ms() > 0) options.connect_timeout = absl::Milliseconds(o.connect_timeout_ms());
      if (o.read_timeout_ms() > 0) options.read_timeout = absl::Milliseconds(o.read_timeout_ms());
      absl::StatusOr<std::unique_ptr<OpenAIProvider>> provider = OpenAIProvider::Create(options);
      if (!provider.ok()) return provider.status();
      s.provider = *std::move(provider);
    } else {
      s.provider = std::make_unique<SimProvider>(SimProviderOptions{
          .model = m.info().name(), .device_id = config.device_id(), .backend = m.sim()});
    }
    served.push_back(std::move(s));
  }
  return served;
}

}  // namespace loom
