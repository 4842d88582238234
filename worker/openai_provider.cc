#include "worker/openai_provider.h"

#include <httplib.h>

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"
#include "common/tokens.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"
#include "common/sse_parser.h"

namespace loom {
namespace {

using json = nlohmann::json;

// Sends `req` on `client`; cancellation closes the connection at once.
httplib::Result Send(httplib::Client* client, const httplib::Request& req,
                     const Cancellation& cancel) {
  const int cancel_id = cancel.OnCancel([client] { client->stop(); });
  httplib::Result result = client->send(req);
  cancel.RemoveCallback(cancel_id);
  return result;
}

template <typename Duration>
void SetTimeouts(httplib::Client* client, Duration connect, Duration read) {
  client->set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(connect));
  client->set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(read));
  client->set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(read));
}

httplib::Headers AuthHeaders(const std::string& api_key) {
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  return headers;
}

}  // namespace

absl::Status SplitBaseUrl(const std::string& base_url, std::string* origin, std::string* prefix) {
  absl::string_view rest = base_url;
  std::string scheme;
  if (absl::ConsumePrefix(&rest, "http://")) {
    scheme = "http://";
  } else if (absl::ConsumePrefix(&rest, "https://")) {
    scheme = "https://";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("base_url '", base_url, "' must start with http:// or https://"));
  }
  const size_t slash = rest.find('/');
  const absl::string_view host = rest.substr(0, slash);
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat("base_url '", base_url, "' has no host"));
  *origin = absl::StrCat(scheme, host);
  absl::string_view path = slash == absl::string_view::npos ? "" : rest.substr(slash);
  while (absl::ConsumeSuffix(&path, "/")) {
  }
  *prefix = std::string(path);
  return absl::OkStatus();
}

absl::Status StatusFromHttp(int http_status, absl::string_view body) {
  // The server's bytes are foreign: cut at a character and made valid UTF-8 before they reach a
  // status message (and from there JSON and prompts on the coordinator).
  std::string message = ToValidUtf8(TruncateUtf8(body, 300, "..."));
  json parsed = json::parse(body, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error")) {
    const json& e = parsed["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) {
      message = TruncateUtf8(e["message"].get<std::string>(), 1000, "...");
    } else if (e.is_string()) {
      message = TruncateUtf8(e.get<std::string>(), 1000, "...");
    }
  }
  const std::string text = absl::StrCat("upstream HTTP ", http_status, ": ", message);
  switch (http_status) {
    case 400:
    case 413:
    case 422:
      return absl::InvalidArgumentError(text);  // the request itself: no device would take it
    case 404:
      return absl::NotFoundError(text);          // this server lacks the model: try another
    case 408:
    case 504:
      return absl::DeadlineExceededError(text);
    case 429:
      return absl::ResourceExhaustedError(text);  // busy: try another device
    default:
      // 401/403 (this device is misconfigured), 5xx, anything else: another device may serve.
      return absl::UnavailableError(text);
  }
}

absl::StatusOr<std::unique_ptr<OpenAIProvider>> OpenAIProvider::Create(
    OpenAIProviderOptions options) {
  std::string origin, prefix;
  if (auto s = SplitBaseUrl(options.base_url, &origin, &prefix); !s.ok()) return s;
  if (options.model.empty()) return absl::InvalidArgumentError("openai backend: empty model name");
  return std::unique_ptr<OpenAIProvider>(
      new OpenAIProvider(std::move(options), std::move(origin), std::move(prefix)));
}

OpenAIProvider::OpenAIProvider(OpenAIProviderOptions options, std::string origin,
                               std::string prefix)
    : options_(std::move(options)), origin_(std::move(origin)), prefix_(std::move(prefix)) {}

OpenAIProvider::~OpenAIProvider() = default;

std::unique_ptr<httplib::Client> OpenAIProvider::TakeClient(bool* reused) {
  {
    absl::MutexLock lock(&pool_mu_);
    const absl::Time now = absl::Now();
    while (!idle_.empty()) {
      auto [client, since] = std::move(idle_.back());
      idle_.pop_back();
      if (now - since <= options_.idle_connection_timeout) {
        *reused = true;
        return std::move(client);
      }
      // Idle too long: the server may have closed it; so may every older one.
      idle_.clear();
    }
  }
  *reused = false;
  auto client = std::make_unique<httplib::Client>(origin_);
  client->set_tcp_nodelay(true);  // the request's headers and body must not wait for an ACK
  client->set_keep_alive(true);
  return client;
}

void OpenAIProvider::ReturnClient(std::unique_ptr<httplib::Client> client) {
  absl::MutexLock lock(&pool_mu_);
  if (static_cast<int>(idle_.size()) >= options_.max_idle_connections) return;
  idle_.emplace_back(std::move(client), absl::Now());
}

std::unique_ptr<httplib::Client> OpenAIProvider::Connect(absl::Time deadline, bool* reused) {
  std::unique_ptr<httplib::Client> client = TakeClient(reused);
  const absl::Duration left = std::max(deadline - absl::Now(), absl::Microseconds(1));
  SetTimeouts(client.get(), absl::ToChronoMicroseconds(std::min(options_.connect_timeout, left)),
              absl::ToChronoMicroseconds(std::min(options_.read_timeout, left)));
  return client;
}

namespace {

// One streamed answer, event by event: its text (passed on to the sink), tool calls and log
// probabilities (reported whole at the end), finish reason and usage.
class ChatStream {
 public:
  explicit ChatStream(const TokenSink& sink) : sink_(sink) {}

  // One SSE event's data; false stops the reading (an error, or the consumer left).
  bool OnEvent(absl::string_view data) {
    if (data == "[DONE]") {
      done = true;
      return true;
    }
    std::optional<ChatChunk> chunk = ParseChatChunk(data);
    if (!chunk) {
      error = absl::UnavailableError("upstream sent an event that is not JSON");
      return false;
    }
    if (chunk->error) {
      error = absl::UnavailableError(
          absl::StrCat("upstream error in the stream: ", TruncateUtf8(*chunk->error, 1000, "...")));
      return false;
    }
    if (!chunk->content.empty()) {
      text += chunk->content;
      if (!sink_(chunk->content)) {
        consumer_gone = true;
        return false;
      }
    }
    for (const ToolCallDelta& d : chunk->tool_calls) tool_calls_.Add(d);
    if (chunk->logprobs.is_array()) {
      for (json& entry : chunk->logprobs) logprobs_.push_back(std::move(entry));
    }
    if (!chunk->finish_reason.empty()) {
      last_.set_finish_reason(NormalizeFinishReason(chunk->finish_reason));
    }
    v1::Usage& usage = *last_.mutable_usage();
    if (chunk->prompt_tokens) usage.set_prompt_tokens(*chunk->prompt_tokens);
    if (chunk->completion_tokens) {
      usage.set_completion_tokens(*chunk->completion_tokens);
      usage_seen_ = true;
    }
    return true;
  }

  // The final chunk of a stream read to [DONE]: what the server did not report (usage, the
  // finish reason) is counted or defaulted.
  v1::InferChunk Final(const GenerateRequest& request) {
    v1::InferChunk last = last_;
    v1::Usage& usage = *last.mutable_usage();
    last.set_tool_calls_json(ToValidUtf8(tool_calls_.Json()));
    if (request.structure.logprobs()) last.set_logprobs_json(DumpJson(logprobs_));
    if (!usage_seen_) {
      usage.set_completion_tokens(CountTokens(text) + CountTokens(last.tool_calls_json()));
    }
    if (usage.prompt_tokens() == 0) {
      for (const auto& m : request.messages) {
        usage.set_prompt_tokens(usage.prompt_tokens() + CountTokens(m.content()));
      }
    }
    if (last.finish_reason().empty()) last.set_finish_reason("stop");
    return last;
  }

  std::string text;
  bool done = false;
  bool consumer_gone = false;
  absl::Status error;

 private:
  const TokenSink& sink_;
  v1::InferChunk last_;
  bool usage_seen_ = false;
  ToolCallAssembler tool_calls_;  // streamed in pieces, reported whole in the final chunk
  json logprobs_ = json::array();  // the same, for the tokens' log probabilities
};

}  // namespace

absl::StatusOr<v1::InferChunk> OpenAIProvider::Generate(const GenerateRequest& request,
                                                        const TokenSink& sink,
                                                        const Cancellation& cancel) {
  json body = {{"model", options_.model}, {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  body["messages"] = json::array();
  for (const auto& m : request.messages) body["messages"].push_back(MessageJson(m));
  if (request.max_tokens > 0) body["max_tokens"] = request.max_tokens;
  AddSampling(request.sampling, &body);
  AddStructure(request.structure, &body);

  if (request.deadline <= absl::Now()) {
    return absl::DeadlineExceededError("deadline already passed");
  }
  bool reused = false;
  std::unique_ptr<httplib::Client> client = Connect(request.deadline, &reused);

  int http_status = 0;
  std::string error_body;
  ChatStream stream(sink);
  SseParser parser;
  httplib::Request req;
  req.method = "POST";
  req.path = prefix_ + "/chat/completions";
  req.headers = AuthHeaders(options_.api_key);
  req.headers.emplace("Accept", "text/event-stream");
  req.body = DumpJson(body);
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& response) {
    http_status = response.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    if (cancel.IsCancelled() || absl::Now() > request.deadline) return false;
    if (http_status != 200) {
      error_body.append(data, std::min(length, options_.max_error_body - std::min(
                                                   options_.max_error_body, error_body.size())));
      return true;
    }
    absl::Status s = parser.Feed(absl::string_view(data, length),
                                 [&](absl::string_view event) { return stream.OnEvent(event); });
    if (!s.ok() && stream.error.ok() && !stream.consumer_gone) stream.error = s;
    return s.ok();
  };
  httplib::Result result = Send(client.get(), req, cancel);
  // A kept-alive connection the server closed while it was idle fails before any answer:
  // the call is made again once on a new connection (nothing reached the model).
  if (!result && reused && http_status == 0 && stream.text.empty() && !cancel.IsCancelled() &&
      absl::Now() < request.deadline) {
    {
      absl::MutexLock lock(&pool_mu_);
      idle_.clear();  // opened as long ago as this one, or longer
    }
    client = Connect(request.deadline, &reused);
    result = Send(client.get(), req, cancel);
  }

  if (stream.consumer_gone || cancel.IsCancelled()) return absl::CancelledError("cancelled");
  if (!stream.error.ok()) return stream.error;
  if (absl::Now() > request.deadline) {
    return absl::DeadlineExceededError(absl::StrCat("upstream ", origin_, " passed the deadline"));
  }
  if (http_status != 0 && http_status != 200) return StatusFromHttp(http_status, error_body);
  if (!result) {
    return absl::UnavailableError(absl::StrCat("upstream ", origin_, ": ",
                                               httplib::to_string(result.error())));
  }
  if (!stream.done) {
    return absl::UnavailableError(
        absl::StrCat("upstream ", origin_, " ended the stream before [DONE]"));
  }
  v1::InferChunk last = stream.Final(request);
  // The response was read to its end: the connection can carry the next call.
  ReturnClient(std::move(client));
  return last;
}

absl::StatusOr<v1::EmbedResponse> OpenAIProvider::Embed(const std::vector<std::string>& input,
                                                        int dimensions, absl::Time deadline,
                                                        const Cancellation& cancel) {
  json body = {{"model", options_.model}, {"input", input}, {"encoding_format", "float"}};
  if (dimensions > 0) body["dimensions"] = dimensions;
  if (deadline <= absl::Now()) return absl::DeadlineExceededError("deadline already passed");
  bool reused = false;
  std::unique_ptr<httplib::Client> client = Connect(deadline, &reused);
  httplib::Client* raw = client.get();
  const int cancel_id = cancel.OnCancel([raw] { raw->stop(); });
  httplib::Result result =
      client->Post(prefix_ + "/embeddings", AuthHeaders(options_.api_key), DumpJson(body),
                   "application/json");
  cancel.RemoveCallback(cancel_id);
  if (cancel.IsCancelled()) return absl::CancelledError("cancelled");
  if (!result) {
    return absl::UnavailableError(absl::StrCat("upstream ", origin_, ": ",
                                               httplib::to_string(result.error())));
  }
  if (result->status != 200) return StatusFromHttp(result->status, result->body);
  json parsed = json::parse(result->body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("data") ||
      !parsed["data"].is_array() || parsed["data"].size() != input.size()) {
    return absl::UnavailableError(absl::StrCat(
        "upstream ", origin_, prefix_, "/embeddings did not return one embedding per input"));
  }
  v1::EmbedResponse out;
  for (size_t i = 0; i < input.size(); ++i) out.add_data();
  for (size_t i = 0; i < parsed["data"].size(); ++i) {
    const json& d = parsed["data"][i];
    const size_t index = d.is_object() && d.contains("index") && d["index"].is_number_unsigned()
                             ? d["index"].get<size_t>()
                             : i;
    if (!d.is_object() || !d.contains("embedding") || !d["embedding"].is_array() ||
        index >= input.size() || out.data(static_cast<int>(index)).values_size() > 0) {
      return absl::UnavailableError(absl::StrCat("upstream ", origin_,
                                                 " returned a malformed embedding"));
    }
    v1::Embedding* e = out.mutable_data(static_cast<int>(index));
    for (const json& x : d["embedding"]) {
      if (!x.is_number()) {
        return absl::UnavailableError(absl::StrCat("upstream ", origin_,
                                                   " returned a non-numeric embedding"));
      }
      e->add_values(x.get<float>());
    }
  }
  int64_t tokens = 0;
  if (parsed.contains("usage") && parsed["usage"].is_object() &&
      parsed["usage"].contains("prompt_tokens") && parsed["usage"]["prompt_tokens"].is_number_integer()) {
    tokens = parsed["usage"]["prompt_tokens"].get<int64_t>();
  } else {
    for (const std::string& text : input) tokens += CountTokens(text);
  }
  out.mutable_usage()->set_prompt_tokens(tokens);
  ReturnClient(std::move(client));
  return out;
}

namespace {

// "8.0B", "70.6B", "567M" (Ollama's parameter_size) in billions; 0 when unreadable.
double ParseParameterSize(absl::string_view size) {
  double scale = 1;
  if (absl::ConsumeSuffix(&size, "B")) {
    scale = 1;
  } else if (absl::ConsumeSuffix(&size, "M")) {
    scale = 1e-3;
  } else if (absl::ConsumeSuffix(&size, "K")) {
    scale = 1e-6;
  } else {
    return 0;
  }
  double value = 0;
  if (!absl::SimpleAtod(size, &value) || !std::isfinite(value) || value <= 0) return 0;
  return value * scale;
}

// GET origin+path; the status for a transport failure or an HTTP error, else the body.
absl::StatusOr<std::string> GetJson(const std::string& origin, const std::string& path,
                                    const std::string& api_key, absl::Duration timeout,
                                    int* http_status) {
  httplib::Client client(origin);
  SetTimeouts(&client, absl::ToChronoMicroseconds(timeout), absl::ToChronoMicroseconds(timeout));
  httplib::Result result = client.Get(path, AuthHeaders(api_key));
  if (!result) {
    *http_status = 0;
    return absl::UnavailableError(absl::StrCat("the model server at ", origin,
                                               " is not answering (",
                                               httplib::to_string(result.error()), ")"));
  }
  *http_status = result->status;
  if (result->status != 200) return StatusFromHttp(result->status, result->body);
  return std::move(result->body);
}

absl::StatusOr<std::vector<OpenAIProvider::UpstreamModel>> ListModelsAt(
    const std::string& origin, const std::string& prefix, const std::string& api_key,
    absl::Duration timeout, bool sizes) {
  const std::string base_url = origin + prefix;
  int http_status = 0;
  absl::StatusOr<std::string> body = GetJson(origin, prefix + "/models", api_key, timeout, &http_status);
  if (!body.ok()) {
    if (http_status == 404 && !absl::EndsWith(prefix, "/v1")) {
      return absl::FailedPreconditionError(absl::StrCat(
          base_url, " has no ", prefix, "/models: OpenAI-compatible servers serve their API "
          "under /v1 (Ollama http://HOST:11434/v1, llama-server and vLLM http://HOST:PORT/v1); "
          "try --openai_base_url=", base_url, "/v1"));
    }
    if (http_status == 401 || http_status == 403) {
      return absl::PermissionDeniedError(absl::StrCat(
          body.status().message(), " (the model server refused the key: check --openai_api_key)"));
    }
    if (http_status == 503) {
      return absl::UnavailableError(absl::StrCat("the model server at ", base_url,
                                                 " is not ready yet (", body.status().message(), ")"));
    }
    return body.status();
  }
  json parsed = json::parse(*body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("data") ||
      !parsed["data"].is_array()) {
    return absl::UnavailableError(absl::StrCat(
        base_url, "/models did not return an OpenAI model list: is this an OpenAI-compatible "
        "server's base URL?"));
  }
  std::vector<OpenAIProvider::UpstreamModel> models;
  bool any_size = false;
  for (const json& m : parsed["data"]) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
    OpenAIProvider::UpstreamModel& model = models.emplace_back();
    model.id = ToValidUtf8(m["id"].get<std::string>());
    if (m.contains("owned_by") && m["owned_by"].is_string()) model.owned_by = m["owned_by"];
    // llama-server: "meta": {"n_params": 8030261248, ...}
    if (m.contains("meta") && m["meta"].is_object() && m["meta"].contains("n_params") &&
        m["meta"]["n_params"].is_number() && m["meta"]["n_params"].get<double>() > 0) {
      model.parameters_b = m["meta"]["n_params"].get<double>() / 1e9;
      any_size = true;
    }
  }
  if (sizes && !any_size && !models.empty()) {
    // Ollama lists sizes only in its native API: {"models": [{"name": ..., "details":
    // {"parameter_size": "8.0B"}}]}. Any other server answers 404 here; nothing is lost.
    int tags_status = 0;
    absl::StatusOr<std::string> tags = GetJson(origin, "/api/tags", api_key, timeout, &tags_status);
    json t = tags.ok() ? json::parse(*tags, nullptr, false) : json();
    if (t.is_object() && t.contains("models") && t["models"].is_array()) {
      for (const json& entry : t["models"]) {
        if (!entry.is_object() || !entry.contains("details") || !entry["details"].is_object()) continue;
        const json& details = entry["details"];
        if (!details.contains("parameter_size") || !details["parameter_size"].is_string()) continue;
        const double b = ParseParameterSize(details["parameter_size"].get<std::string>());
        for (const char* key : {"name", "model"}) {
          if (!entry.contains(key) || !entry[key].is_string()) continue;
          for (auto& model : models) {
            if (model.id == entry[key].get<std::string>() && b > 0) model.parameters_b = b;
          }
        }
      }
    }
  }
  return models;
}

}  // namespace

absl::StatusOr<std::vector<OpenAIProvider::UpstreamModel>> OpenAIProvider::ListModels(
    const std::string& base_url, const std::string& api_key, absl::Duration timeout) {
  std::string origin, prefix;
  if (auto s = SplitBaseUrl(base_url, &origin, &prefix); !s.ok()) return s;
  LOOM_ASSIGN_OR_RETURN(std::vector<UpstreamModel> models,
                        ListModelsAt(origin, prefix, api_key, timeout, /*sizes=*/true));
  if (models.empty()) return absl::NotFoundError(absl::StrCat(base_url, " serves no models"));
  return models;
}

absl::Status OpenAIProvider::CheckUpstream(absl::Duration timeout) {
  LOOM_ASSIGN_OR_RETURN(std::vector<UpstreamModel> models,
                        ListModelsAt(origin_, prefix_, options_.api_key, timeout, /*sizes=*/false));
  std::vector<std::string> ids;
  for (const UpstreamModel& m : models) {
    if (m.id == options_.model) return absl::OkStatus();
    ids.push_back(m.id);
  }
  // llama-server serves the one model it loaded under whatever name a request gives.
  if (models.size() == 1 && models[0].owned_by == "llamacpp") return absl::OkStatus();
  if (ids.size() > 8) {
    ids.resize(8);
    ids.push_back("...");
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "model '", options_.model, "' is not served at ", origin_, prefix_, " (it lists: ",
      ids.empty() ? "nothing" : absl::StrJoin(ids, ", "),
      "): pull or load it (e.g. ollama pull ", options_.model, ") or fix --model"));
}

}  // namespace loom
