// File: worker/openai_provider.h
// An InferenceProvider in front of any OpenAI-compatible server (llama.cpp llama-server,
// Ollama, vLLM, LM Studio): POST {base_url}/chat/completions with "stream": true, read the
// Server-Sent Events, pass each delta's text on, and report the usage the server sends (or,
// when it sends none, the coordinator's token count of the text).
//
//   auto provider = OpenAIProvider::Create({.base_url = "http://127.0.0.1:11434/v1",
//                                           .model = "llama3.1:8b"});
//
// Cancellation closes the upstream connection at once (the server stops generating); the
// deadline bounds the whole call; read_timeout bounds a silent server. Upstream failures map
// to statuses that drive the coordinator's retry decision (StatusFromHttp): a request the
// server rejects is INVALID_ARGUMENT (not retried); a busy server RESOURCE_EXHAUSTED; a broken,
// unreachable, misconfigured or failing server UNAVAILABLE (retried on another device).
//
// Thread-safe: each Generate uses its own connection.
#ifndef LOOM_WORKER_OPENAI_PROVIDER_H_
#define LOOM_WORKER_OPENAI_PROVIDER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/inference_provider.h"

namespace httplib {
class Client;
}

namespace loom {

struct OpenAIProviderOptions {
  std::string base_url;   // "http(s)://host:port[/prefix]", e.g. "http://127.0.0.1:8080/v1"
  std::string model;      // the model name the server knows
  std::string api_key;    // optional bearer token
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration read_timeout = absl::Seconds(60);
  size_t max_error_body = 4096;  // bytes of an error response kept for the message
  // Keep-alive connections to the server are reused across calls; one idle longer than this
  // is closed instead (servers close theirs after a few seconds: llama-server and uvicorn 5 s).
  absl::Duration idle_connection_timeout = absl::Seconds(2);
  int max_idle_connections = 64;
};

class OpenAIProvider : public InferenceProvider {
 public:
  // INVALID_ARGUMENT for a malformed base_url or an empty model.
  static absl::StatusOr<std::unique_ptr<OpenAIProvider>> Create(OpenAIProviderOptions options);

  absl::StatusOr<v1::InferChunk> Generate(const GenerateRequest& request, const TokenSink& sink,
                                     const Cancellation& cancel) override;
  bool simulated() const override { return false; }
  // POST {base_url}/embeddings (encoding_format float); the server's usage, else the
  // coordinator's count of the input.
  absl::StatusOr<v1::EmbedResponse> Embed(const std::vector<std::string>& input, int dimensions,
                                          absl::Time deadline, const Cancellation& cancel) override;

  // A model as its server lists it.
  struct UpstreamModel {
    std::string id;
    double parameters_b = 0;  // from the server (llama-server's meta.n_params, Ollama's
                              // /api/tags parameter_size); 0 when it does not say
    std::string owned_by;
  };
  // The models the server lists at GET {base_url}/models, with their sizes where the server
  // tells them (for Ollama, from its native GET /api/tags, best effort).
  static absl::StatusOr<std::vector<UpstreamModel>> ListModels(
      const std::string& base_url, const std::string& api_key,
      absl::Duration timeout = absl::Seconds(5));

  // Whether the server can serve this model now: it answers, it is not loading (503), the key
  // is accepted, and it lists the model (llama-server, which serves its one model under any
  // name, excepted). The message says what to fix: a base URL without /v1 gets that hint, a
  // model that is not there names what the server lists.
  absl::Status CheckUpstream(absl::Duration timeout) override;

 private:
  OpenAIProvider(OpenAIProviderOptions options, std::string origin, std::string prefix);

  // A connection for one call: an idle one from the pool (*reused), else a new one.
  std::unique_ptr<httplib::Client> TakeClient(bool* reused);
  // Back to the pool after a call that ended cleanly (its connection is in a known state).
  void ReturnClient(std::unique_ptr<httplib::Client> client);
  // TakeClient, with connect and read timeouts cut to what is left before `deadline`.
  std::unique_ptr<httplib::Client> Connect(absl::Time deadline, bool* reused);

  const OpenAIProviderOptions options_;
  const std::string origin_;  // scheme://host:port
  const std::string prefix_;  // path before /chat/completions, without a trailing slash

  absl::Mutex pool_mu_;
  // Idle clients and when each became idle, most recent last.
  std::vector<std::pair<std::unique_ptr<httplib::Client>, absl::Time>> idle_
      ABSL_GUARDED_BY(pool_mu_);

 public:
  ~OpenAIProvider() override;
};

// The one converter from an upstream HTTP status (and its body) to a Status.
absl::Status StatusFromHttp(int http_status, absl::string_view body);

// Splits "http://host:port/v1/" into "http://host:port" and "/v1".
absl::Status SplitBaseUrl(const std::string& base_url, std::string* origin, std::string* prefix);

}  // namespace loom

#endif  // LOOM_WORKER_OPENAI_PROVIDER_H_
