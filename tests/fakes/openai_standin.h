// File: tests/fakes/openai_standin.h
// A small OpenAI-compatible server for tests of the `openai` worker backend, on loopback with
// an ephemeral port. POST /v1/chat/completions streams (SSE) a deterministic answer
// " standin <model> answers: <first words of the last user message>" word by word, then a usage
// chunk and "data: [DONE]"; without "stream": true it answers one JSON completion.
// GET /v1/models lists its models. The model name selects a behaviour:
//   "...error-NNN..."  HTTP NNN with an OpenAI error body     "...drop..."   closes mid-stream
//   "...slow..."       20 ms between chunks                   "...hang..."   keep-alive comments
//   "...nousage..."    no usage chunk                                         until the client goes
//   "...router-CAT..." answers {"category": "CAT", "multi_part": false}, as a planning model would
// Like real servers it ends a stream with a finish chunk ("length" when max_tokens cut the
// answer, else "stop") and sets TCP_NODELAY; with "logprobs": true each streamed word carries a
// logprobs.content entry (-0.25, no alternatives). set_flavor() makes its model list look like
// llama-server's (owned_by "llamacpp", meta.n_params) or Ollama's (plus GET /api/tags with
// details.parameter_size); set_loading(true) answers every request 503 "Loading model", as
// llama-server does while it loads. What a real server (llama-server, Ollama, vLLM)
// does that this one does not: real tokens and tokenization, sampling parameters (it records
// them in last_request() but they change nothing), tool calls, real log probabilities and
// top_logprobs, logprobs unstreamed, n > 1, queueing under load,
// chunked prompt processing delays, the non-streamed "usage" of every variant, authentication
// (it records the Authorization header but accepts any), and HTTP/2 or TLS.
// Limits it shares with llama-server (both are cpp-httplib): a fixed pool of request threads
// (8 unless set_threads), and a kept-alive connection holds its thread while idle (up to 5 s);
// one connection more than the pool waits. bench/http_bench.sh's direct clients and the worker
// share one stand-in, so it runs it with a pool as large as both together (--threads), as an
// instant upstream that is nobody's bottleneck (vLLM and Ollama have no such pool).
//
// Thread-safe.
#ifndef LOOM_TESTS_FAKES_OPENAI_STANDIN_H_
#define LOOM_TESTS_FAKES_OPENAI_STANDIN_H_

#include <httplib.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace loom {

class OpenAIStandIn {
 public:
  explicit OpenAIStandIn(std::vector<std::string> models) : models_(std::move(models)) {
    server_.set_tcp_nodelay(true);  // as real servers do: no delayed-ACK stall on keep-alive
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      if (Loading(res)) return;
      const Flavor flavor = this->flavor();
      nlohmann::json list = {{"object", "list"}, {"data", nlohmann::json::array()}};
      for (const auto& m : models_) {
        nlohmann::json entry = {{"id", m}, {"object", "model"}};
        if (flavor == Flavor::kLlamaServer) {
          entry["owned_by"] = "llamacpp";
          entry["meta"] = {{"n_params", 8030261248LL}, {"n_ctx_train", 131072}};
        } else if (flavor == Flavor::kOllama) {
          entry["owned_by"] = "library";
        }
        list["data"].push_back(entry);
      }
      res.set_content(list.dump(), "application/json");
    });
    server_.Get("/api/tags", [this](const httplib::Request&, httplib::Response& res) {
      if (flavor() != Flavor::kOllama) {
        res.status = 404;
        res.set_content("404 page not found", "text/plain");
        return;
      }
      nlohmann::json tags = {{"models", nlohmann::json::array()}};
      for (const auto& m : models_) {
        tags["models"].push_back({{"name", m}, {"model", m},
                                  {"details", {{"family", "llama"}, {"parameter_size", "70.6B"},
                                               {"quantization_level", "Q4_K_M"}}}});
      }
      res.set_content(tags.dump(), "application/json");
    });
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      Complete(req, res);
    });
  }
  ~OpenAIStandIn() { Stop(); }

  // Binds 127.0.0.1 on a free port and serves on a thread; returns the base URL.
  // Request threads (before Start): cpp-httplib's default is 8.
  void set_threads(int n) {
    server_.new_task_queue = [n] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  }
  std::string Start() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // listen_after_bind marks the server running before it accepts; bounded wait.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    return absl::StrCat("http://127.0.0.1:", port_, "/v1");
  }
  void Stop() {
    if (thread_.joinable()) {
      server_.stop();
      thread_.join();
    }
  }
  int port() const { return port_; }

  nlohmann::json last_request() {
    absl::MutexLock lock(&mu_);
    return last_request_;
  }
  // How many connections chat requests arrived on (distinct client ports).
  int chat_connections() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(client_ports_.size());
  }
  std::string last_authorization() {
    absl::MutexLock lock(&mu_);
    return last_authorization_;
  }

  enum class Flavor { kPlain, kLlamaServer, kOllama };
  void set_flavor(Flavor flavor) {
    absl::MutexLock lock(&mu_);
    flavor_ = flavor;
  }
  void set_loading(bool loading) {
    absl::MutexLock lock(&mu_);
    loading_ = loading;
  }

 private:
  Flavor flavor() {
    absl::MutexLock lock(&mu_);
    return flavor_;
  }
  // While loading, llama-server answers 503 with this body.
  bool Loading(httplib::Response& res) {
    {
      absl::MutexLock lock(&mu_);
      if (!loading_) return false;
    }
    res.status = 503;
    res.set_content(nlohmann::json{{"error", {{"code", 503}, {"message", "Loading model"},
                                              {"type", "unavailable_error"}}}}.dump(),
                    "application/json");
    return true;
  }

  void Complete(const httplib::Request& req, httplib::Response& res) {
    if (Loading(res)) return;
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    {
      absl::MutexLock lock(&mu_);
      last_request_ = body;
      client_ports_.insert(req.remote_port);
      last_authorization_ = req.get_header_value("Authorization");
    }
    if (body.is_discarded() || !body.contains("model") || !body.contains("messages")) {
      Error(res, 400, "malformed request");
      return;
    }
    const std::string model = body["model"].get<std::string>();
    if (std::find(models_.begin(), models_.end(), model) == models_.end()) {
      Error(res, 404, absl::StrCat("model '", model, "' not found"));
      return;
    }
    const size_t err = model.find("error-");
    int code = 0;
    if (err != std::string::npos && absl::SimpleAtoi(model.substr(err + 6, 3), &code)) {
      Error(res, code, "stand-in failure");
      return;
    }
    std::string prompt;
    for (const auto& m : body["messages"]) {
      if (m.value("role", "") == "user") prompt = m.value("content", "");
    }
    std::vector<std::string> words = {" standin", absl::StrCat(" ", model), " answers:"};
    int echoed = 0;
    for (absl::string_view w : absl::StrSplit(prompt, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
      if (++echoed > 6) break;
      words.push_back(absl::StrCat(" ", w));
    }
    // A planning model: "...router-CATEGORY..." answers the router's JSON for CATEGORY (which
    // need not be a real one, to test refusal).
    if (const size_t route = model.find("router-"); route != std::string::npos) {
      std::string category = model.substr(route + 7);
      category = category.substr(0, category.find('-'));
      words = {absl::StrCat("{\"category\": \"", category, "\", \"multi_part\": false}")};
    }
    int64_t max_tokens = body.value("max_tokens", int64_t{0});
    std::string finish_reason = "stop";
    if (max_tokens > 0 && static_cast<int64_t>(words.size()) > max_tokens) {
      words.resize(max_tokens);
      finish_reason = "length";
    }
    const int64_t prompt_tokens = static_cast<int64_t>(prompt.size() / 4 + 1);
    if (!body.value("stream", false)) {
      std::string text;
      for (const auto& w : words) text += w;
      nlohmann::json out = {
          {"id", "cmpl-standin"}, {"object", "chat.completion"}, {"model", model},
          {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", text}}},
                        {"finish_reason", finish_reason}}}},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", words.size()}}}};
      res.set_content(out.dump(), "application/json");
      return;
    }
    res.set_chunked_content_provider(
        "text/event-stream",
        [model, words, prompt_tokens, finish_reason,
         logprobs = body.value("logprobs", false)](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& data) {
            const std::string event = absl::StrCat("data: ", data, "\n\n");
            return sink.write(event.data(), event.size());
          };
          if (absl::StrContains(model, "hang")) {
            // Keep the connection open until the client goes away (bounded: 30 s).
            for (int i = 0; i < 1500; ++i) {
              if (!sink.write(": waiting\n\n", 11)) return false;
              std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            return false;
          }
          for (size_t i = 0; i < words.size(); ++i) {
            if (absl::StrContains(model, "drop") && i == 2) return false;  // connection closes
            nlohmann::json chunk = {
                {"id", "cmpl-standin"}, {"object", "chat.completion.chunk"}, {"model", model},
                {"choices", {{{"index", 0}, {"delta", {{"content", words[i]}}}, {"finish_reason", nullptr}}}}};
            if (logprobs) {  // one entry per word, as servers send per token
              chunk["choices"][0]["logprobs"] = {
                  {"content", {{{"token", words[i]}, {"logprob", -0.25}, {"bytes", nullptr},
                                {"top_logprobs", nlohmann::json::array()}}}}};
            }
            if (!send(chunk.dump())) return false;
            if (absl::StrContains(model, "slow")) std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
          // As OpenAI, llama-server and vLLM do: an empty delta carrying why it stopped.
          nlohmann::json finish = {
              {"id", "cmpl-standin"}, {"object", "chat.completion.chunk"}, {"model", model},
              {"choices", {{{"index", 0}, {"delta", nlohmann::json::object()}, {"finish_reason", finish_reason}}}}};
          if (!send(finish.dump())) return false;
          if (!absl::StrContains(model, "nousage")) {
            nlohmann::json usage = {{"id", "cmpl-standin"}, {"object", "chat.completion.chunk"},
                                    {"choices", nlohmann::json::array()},
                                    {"usage", {{"prompt_tokens", prompt_tokens},
                                               {"completion_tokens", words.size()}}}};
            if (!send(usage.dump())) return false;
          }
          send("[DONE]");
          sink.done();
          return true;
        });
  }

  static void Error(httplib::Response& res, int code, const std::string& message) {
    res.status = code;
    res.set_content(nlohmann::json{{"error", {{"message", message}, {"type", "standin_error"}}}}.dump(),
                    "application/json");
  }

  const std::vector<std::string> models_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  absl::Mutex mu_;
  nlohmann::json last_request_ ABSL_GUARDED_BY(mu_);
  std::set<int> client_ports_ ABSL_GUARDED_BY(mu_);  // one per connection a chat came on
  std::string last_authorization_ ABSL_GUARDED_BY(mu_);
  Flavor flavor_ ABSL_GUARDED_BY(mu_) = Flavor::kPlain;
  bool loading_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace loom

#endif  // LOOM_TESTS_FAKES_OPENAI_STANDIN_H_
